"""The one exception type raised by the message conversions."""


class ConversionError(ValueError):
    """A message (or array) cannot be converted.

    Attributes:
        field: the message field at fault, e.g. ``"Image.encoding"``.
        value: the offending value (short repr).
        reason: what is wrong with it.
    """

    def __init__(self, field, value, reason):
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__("%s=%s: %s" % (field, _short_repr(value), reason))


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
