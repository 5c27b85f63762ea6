"""Draw the four sweeps of one level and the cross-scale connection between two levels.

Run by ``docs/conf.py`` at every build (``builder-inited``), so the figure always
matches this script; it can also be run by hand::

    python docs/scripts/draw_sweeps.py docs/_generated/sweeps.png

The sweep panels are computed, not drawn by hand: each region is labelled with
the wavefront step at which the fast path computes it (its anti-diagonal in the
sweep's own frame, as in ``chrnn_plugin.models.necks.wavefront``), and the arrows
come from its two predecessors as ``DIRECTION_FLIPS`` defines them.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use('Agg')

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

# Same table as chrnn_plugin.models.necks.wavefront.DIRECTION_FLIPS; repeated
# here so the script runs without torch. tests/docs checks that they agree.
DIRECTION_FLIPS = {
    'top_left': (False, False),
    'top_right': (False, True),
    'bottom_left': (True, False),
    'bottom_right': (True, True),
}

GRID = 5  # regions per side in the sweep panels
STEP_CMAP = 'Blues'


def sweep_step(direction: str, row: int, col: int, size: int) -> int:
    """Anti-diagonal (wavefront step) of a region for one sweep direction."""
    flip_rows, flip_cols = DIRECTION_FLIPS[direction]
    r = size - 1 - row if flip_rows else row
    c = size - 1 - col if flip_cols else col
    return r + c


def predecessors(direction: str, row: int, col: int, size: int) -> list[tuple[int, int]]:
    """Horizontal and vertical predecessors that exist (the border has none)."""
    flip_rows, flip_cols = DIRECTION_FLIPS[direction]
    dr = 1 if flip_rows else -1  # the vertical predecessor is on the side the sweep comes from
    dc = 1 if flip_cols else -1
    out = []
    for r, c in ((row, col + dc), (row + dr, col)):
        if 0 <= r < size and 0 <= c < size:
            out.append((r, c))
    return out


def draw_sweep(ax, direction: str, size: int = GRID) -> None:
    cmap = plt.get_cmap(STEP_CMAP)
    last = 2 * size - 2
    for row in range(size):
        for col in range(size):
            step = sweep_step(direction, row, col, size)
            # y axis points down: row 0 at the top, as in a feature map.
            ax.add_patch(
                Rectangle(
                    (col, row),
                    1,
                    1,
                    facecolor=cmap(0.15 + 0.6 * step / last),
                    edgecolor='white',
                    linewidth=1.5,
                )
            )
            ax.text(col + 0.5, row + 0.5, str(step), ha='center', va='center', fontsize=8)
            for pr, pc in predecessors(direction, row, col, size):
                ax.add_patch(
                    FancyArrowPatch(
                        (pc + 0.5 + 0.32 * (col - pc), pr + 0.5 + 0.32 * (row - pr)),
                        (col + 0.5 - 0.2 * (col - pc), row + 0.5 - 0.2 * (row - pr)),
                        arrowstyle='-|>',
                        mutation_scale=7,
                        color='#c0392b',
                        linewidth=0.9,
                    )
                )
    flip_rows, flip_cols = DIRECTION_FLIPS[direction]
    origin = (size - 0.5 if flip_cols else 0.5, size - 0.5 if flip_rows else 0.5)
    ax.plot(*origin, marker='o', markersize=16, markerfacecolor='none', color='#c0392b')
    ax.set_xlim(-0.1, size + 0.1)
    ax.set_ylim(size + 0.1, -0.1)
    ax.set_aspect('equal')
    ax.axis('off')
    ax.set_title(f"'{direction}'", fontsize=10)


def draw_cross_scale(ax) -> None:
    """Level s-1 (6x6) feeds level s (3x3): output y max-pooled to z at the same location."""
    fine, coarse = 6, 3
    gap = 3.5
    for row in range(fine):
        for col in range(fine):
            in_block = row in (2, 3) and col in (2, 3)
            ax.add_patch(
                Rectangle(
                    (col * 0.5, row * 0.5),
                    0.5,
                    0.5,
                    facecolor='#f5b041' if in_block else '#d6eaf8',
                    edgecolor='white',
                    linewidth=1.2,
                )
            )
    for row in range(coarse):
        for col in range(coarse):
            target = row == 1 and col == 1
            ax.add_patch(
                Rectangle(
                    (gap + col, row),
                    1,
                    1,
                    facecolor='#f5b041' if target else '#d6eaf8',
                    edgecolor='white',
                    linewidth=1.5,
                )
            )
    ax.add_patch(
        FancyArrowPatch(
            (2.05, 1.5),
            (gap + 1.1, 1.5),
            arrowstyle='-|>',
            mutation_scale=14,
            color='#7d3c98',
            linewidth=1.5,
            connectionstyle='arc3,rad=-0.35',
        )
    )
    ax.text(
        (2.0 + gap + 1.0) / 2,
        0.35,
        'adaptive max pool\n$z_p = \\max\\, y^{(s-1)}$ over the block',
        ha='center',
        va='center',
        fontsize=8,
        color='#7d3c98',
    )
    ax.text(1.5, 3.35, 'level $s-1$: output $y^{(s-1)}$', ha='center', va='top', fontsize=9)
    ax.text(gap + 1.5, 3.35, 'level $s$: input $x_p$ and $z_p$', ha='center', va='top', fontsize=9)
    ax.set_xlim(-0.2, gap + coarse + 0.2)
    ax.set_ylim(3.8, -0.3)
    ax.set_aspect('equal')
    ax.axis('off')
    ax.set_title('cross-scale connection (same location, next coarser level)', fontsize=10)


def draw(path: Path) -> Path:
    fig = plt.figure(figsize=(10, 6.2), dpi=110)
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1.05], hspace=0.25)
    for index, direction in enumerate(DIRECTION_FLIPS):
        draw_sweep(fig.add_subplot(grid[0, index]), direction)
    draw_cross_scale(fig.add_subplot(grid[1, :]))
    fig.suptitle(
        'Four sweeps over one level (numbers: wavefront step; arrows: predecessors; '
        'circle: origin)',
        fontsize=10,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp in the metadata: the same script gives the same bytes.
    fig.savefig(path, metadata={'Software': None})
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', nargs='?', default='docs/_generated/sweeps.png')
    print(draw(Path(parser.parse_args().out)))


if __name__ == '__main__':
    main()
