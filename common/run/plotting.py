"""Plots that work without a display: a run's curves (:func:`line_plot`,
:func:`plot_history`, :func:`plot_curve`) and the figures of what the models
do inside (:func:`gradient_flow_plot`, :func:`gate_heatmap`,
:func:`recipe_curves`, drawn from the arrays of :mod:`ch_gru.figures`).
Files are rendered through matplotlib's Agg canvas: no display, no pyplot state."""
from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter


def _figure(figsize):
    """A figure on its own Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path, dpi=100):
    """Write ``fig`` as a PNG to ``path`` atomically; the path."""
    from common.run.fileio import atomic_file
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format='png', dpi=dpi)
    return path


def line_plot(series, xlabel, ylabel, path=None, ylim=None, title=None, logy=False):
    """Plot ``series`` (label -> (x, y)). With ``path`` render a PNG through
    matplotlib's Agg canvas (no display, no pyplot state) and return ``path``;
    without it open a pyplot window."""
    if path is None:
        import matplotlib.pyplot as plt
        fig = plt.figure()
    else:
        fig = _figure((6.4, 4.2))
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
    return _save(fig, path)


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


# -- the figures of docs/figures.md -----------------------------------------------------

def gradient_flow_plot(panels, path, title=None):
    """‖∂L/∂h_t‖ against t, log scale, one panel per entry of ``panels``
    (panel title -> {line label -> norms (T,)}); the loss is at step T, right
    of the last point. A label ending in ' (c)' is drawn dashed (an LSTM's
    cell state)."""
    fig = _figure((5.2 * len(panels), 4.2))
    axes = [fig.add_subplot(1, len(panels), i + 1) for i in range(len(panels))]
    for ax, (panel, lines) in zip(axes, panels.items()):
        for label, norms in lines.items():
            ax.plot(range(len(norms)), norms, '--' if label.endswith(' (c)') else '-', label=label)
        T = max(len(norms) for norms in lines.values())
        ax.axvline(T, color='grey', lw=0.8, ls=':')
        ax.text(T, 0.02, ' loss', transform=ax.get_xaxis_transform(), color='grey', fontsize=8)
        ax.set_yscale('log')
        ax.set_xlabel('time step t (the loss is at step T)')
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3, which='both')
    axes[0].set_ylabel('‖∂L/∂h_t‖ (mean over windows)')
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def _show_char(c):
    return {' ': '␣', '\n': '↵', '\t': '⇥'}.get(c, c)


def gate_heatmap(chars, gates, path, units=None, title=None):
    """One heatmap per gate (``gates``: name -> values (T, K) in [0, 1], e.g.
    z and r), the characters of the passage on the x axis (space as ␣, line
    break as ↵), the K units on the y axis (labelled by ``units``, their
    indices, when given)."""
    import numpy
    T = len(chars)
    fig = _figure((max(8.0, 0.13 * T + 2), 1.2 + 2.6 * len(gates)))
    axes = [fig.add_subplot(len(gates), 1, i + 1) for i in range(len(gates))]
    for ax, (name, values) in zip(axes, gates.items()):
        values = numpy.asarray(values)
        image = ax.imshow(values.T, aspect='auto', cmap='viridis', vmin=0, vmax=1, interpolation='nearest')
        ax.set_xticks(range(T))
        ax.set_xticklabels([_show_char(c) for c in chars], fontsize=7, fontfamily='monospace')
        ax.tick_params(axis='x', length=0)
        ax.set_ylabel(f'{name}: unit')
        if units is not None and len(units) <= 16:
            ax.set_yticks(range(len(units)))
            ax.set_yticklabels([str(u) for u in units], fontsize=6)
        elif units is not None:
            ticks = list(range(0, len(units), max(1, len(units) // 8)))
            ax.set_yticks(ticks)
            ax.set_yticklabels([str(units[i]) for i in ticks], fontsize=7)
        ax.set_title(f'gate {name}', fontsize=10, loc='left')
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def recipe_curves(runs, path, title=None):
    """Perplexity of several runs (label -> dict of lists ``epoch``,
    ``seconds``, ``train``, ``valid``, as :func:`ch_gru.figures.read_run_log`
    gives) side by side: against epochs (valid solid, train dashed) and
    against training seconds (valid), log scale."""
    fig = _figure((11.5, 4.3))
    by_epoch, by_time = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, (label, run) in enumerate(runs.items()):
        color = f'C{i}'
        marker = 'o' if len(run['epoch']) < 30 else None
        by_epoch.plot(run['epoch'], run['valid'], '-', color=color, marker=marker, ms=3, label=f'{label}: valid')
        by_epoch.plot(run['epoch'], run['train'], '--', color=color, alpha=0.7, label=f'{label}: train')
        by_time.plot(run['seconds'], run['valid'], '-', color=color, marker=marker, ms=3,
                     label=f"{label}: best valid {min(run['valid']):.1f}")
    for ax, xlabel in ((by_epoch, 'epoch'), (by_time, 'training seconds')):
        ax.set_xlabel(xlabel)
        ax.set_ylabel('perplexity')
        ax.set_yscale('log')
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 4.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(ScalarFormatter())      # 200, 300, 400 rather than 2 x 10^2
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which='both')
        ax.legend(fontsize=8)
    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set_title('per epoch', fontsize=10)
    by_time.set_title('valid perplexity against training time', fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)
