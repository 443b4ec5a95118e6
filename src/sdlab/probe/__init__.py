"""The context-richness probe: teacher contexts, information gap, divergence split, heatmap."""
