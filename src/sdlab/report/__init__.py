"""`sdlab report`: one self-contained HTML page with plots from run, sweep, probe and eval directories."""
