"""The two ways data can fail: the user's input is wrong, or one image file is bad."""


class DataError(ValueError):
    """Bad dataset input (missing folder, malformed label file, ...).

    The message is one line that names the problem and the fix, so a command-line tool can
    print it without a traceback.
    """


class UnreadableImage(Exception):
    """One image file could not be decoded.

    Not a DataError: a few bad files in a million are normal, so the loader skips them
    (and counts them) instead of stopping the run.
    """

    def __init__(self, source, reason):
        super().__init__(f"{source}: {reason}")
        self.source = str(source)
        self.reason = reason
