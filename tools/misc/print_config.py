"""Print the fully merged config (base files, then --cfg-options).

Usage::

    python tools/misc/print_config.py CONFIG [--cfg-options key=value ...]
"""

import argparse

from mmengine.config import Config, DictAction


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, xxx=yyy pairs merged into the config; lists as '
        'key="[a,b]" or key=a,b, nested as key="[(a,b),(c,d)]" (quotes needed, no spaces)',
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Print the config given on the command line."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # Plain print, not rich: the text is Python and must be copyable as is.
    print(cfg.pretty_text)


if __name__ == '__main__':
    main()
