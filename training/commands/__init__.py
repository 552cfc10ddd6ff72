"""One module per training-side CLI command (see training/cli.py)."""

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except ``None``: those flags' help says what "not given"
    resolves to (a per-task default, another flag's value), which "(default: None)" hid."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)
