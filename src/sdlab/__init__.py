"""sdlab: when does self-distillation make a reasoning model better, and when does it break it?"""

__version__ = "0.1.0"


class SdlabError(Exception):
    """An error the user can fix (bad file, bad recipe, bad argument).

    The CLI prints its message on one line without a traceback; the message says
    what is wrong, where (file, row, field or key path) and what to do.
    """
