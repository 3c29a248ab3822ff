"""Validation shared by the stage configuration dataclasses."""


def check_fields(config, checks):
    """Raise ValueError naming the first failing field: ``checks`` is (name, ok, allowed) rows."""
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError("%s.%s = %r is invalid: must be %s"
                             % (type(config).__name__, name, getattr(config, name), allowed))
