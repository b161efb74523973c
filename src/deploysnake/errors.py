"""One error type for problems the user can fix; its message names the cause and what to do."""


class UserError(Exception):
    """Bad input (config, checkpoint, plugin, environment): the message says what to change."""
