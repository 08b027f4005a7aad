"""Line plots that work without a display."""
from matplotlib.ticker import MaxNLocator


def line_plot(series, xlabel, ylabel, path=None, ylim=None, title=None, logy=False):
    """Plot ``series`` (label -> (x, y)). With ``path`` render a PNG through
    matplotlib's Agg canvas (no display, no pyplot state) and return ``path``;
    without it open a pyplot window."""
    if path is None:
        import matplotlib.pyplot as plt
        fig = plt.figure()
    else:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, marker='o' if len(y) < 30 else None)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale('log')
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    if path is None:
        import matplotlib.pyplot as plt
        plt.show()
        return None
    fig.tight_layout()
    from common.fileio import atomic_file
    with atomic_file(path) as f:
        fig.savefig(f, format='png', dpi=100)
    return path
