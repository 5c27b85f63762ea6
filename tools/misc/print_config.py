"""Print the fully merged config (base files, then --cfg-options).

Usage::

    python tools/misc/print_config.py CONFIG [--cfg-options key=value ...]
"""

import argparse

from chrnn_plugin.engine import quiet

quiet.silence_known_warnings()

from chrnn_plugin.engine import cli  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    cli.add_cfg_options_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Print the config given on the command line."""
    args = parse_args(argv)
    cfg = cli.load_config(args.config, args.cfg_options)
    # Plain print, not rich: the text is Python and must be copyable as is.
    print(cfg.pretty_text)


if __name__ == '__main__':
    main()
