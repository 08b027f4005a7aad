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
    from common.run.fileio import atomic_file
    with atomic_file(path) as f:
        fig.savefig(f, format='png', dpi=100)
    return path


def plot_history(history, path, unit='word'):
    """Train and valid perplexity per epoch (``history`` of a run's state), log scale."""
    x = history['epoch']
    ylabel = 'perplexity' if unit == 'word' else 'perplexity (per character)'
    return line_plot({'train': (x, history['train']), 'valid': (x, history['valid'])}, 'epoch', ylabel,
                     path=path, logy=True, title='perplexity per epoch')


def plot_curve(points, path, unit='word'):
    """Train and valid loss (nats/char) or perplexity of ``points`` (the
    ``eval`` records) against training seconds."""
    import math

    def y(ppl):
        return math.log(ppl) if unit == 'char' else ppl
    x = [p['train_seconds'] for p in points]
    lines = {label: (x, [y(p[f'{label}_ppl']) for p in points]) for label in ('train', 'valid')}
    ylabel = 'loss (nats/char)' if unit == 'char' else 'perplexity'
    return line_plot(lines, 'training time (s)', ylabel, path=path, title=f'{ylabel} during training')
