"""common/run/plotting.py: the figures are written as PNGs through the Agg canvas, atomically, and what
they draw is what they were given (read back from the figure's axes)."""
import numpy
import pytest

from common.run import plotting
from helpers.images import read_png


def test_gradient_flow_plot(tmp_path):
    t = numpy.arange(30)
    panels = {'at random initialisation': {'RNN': 0.9 ** (29 - t), 'LSTM': 0.5 ** (29 - t),
                                           'LSTM (c)': 0.6 ** (29 - t)},
              'trained': {'RNN': 0.8 ** (29 - t), 'GRU': numpy.full(30, 0.1)}}
    path = plotting.gradient_flow_plot(panels, str(tmp_path / 'flow.png'), title='a title')
    image = read_png(path)
    assert image.shape[1] > 1.5 * image.shape[0]          # two panels side by side


def test_the_gradient_flow_axes_hold_the_norms_on_a_log_scale(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plotting, '_save', lambda fig, path, dpi=100: figures.append(fig) or path)
    norms = 0.5 ** numpy.arange(10)[::-1]
    plotting.gradient_flow_plot({'p': {'RNN': norms, 'LSTM (c)': norms * 2}}, str(tmp_path / 'x.png'))
    ax = figures[0].axes[0]
    assert ax.get_yscale() == 'log'
    (rnn, cell) = ax.get_lines()[:2]
    assert numpy.array_equal(rnn.get_ydata(), norms) and rnn.get_linestyle() == '-'
    assert cell.get_linestyle() == '--'                     # the LSTM's cell state, dashed
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ['RNN', 'LSTM (c)']


def test_gate_heatmap_shows_the_characters_and_the_values(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plotting, '_save', lambda fig, path, dpi=100: figures.append(fig) or path)
    chars = list('to be,\nor not')
    z = numpy.random.default_rng(0).random((len(chars), 4))
    plotting.gate_heatmap(chars, {'z': z, 'r': 1 - z}, str(tmp_path / 'g.png'), units=[3, 5, 8, 9])
    z_ax, r_ax = figures[0].axes[:2]
    assert [t.get_text() for t in z_ax.get_xticklabels()] == ['t', 'o', '␣', 'b', 'e', ',', '↵', 'o', 'r', '␣',
                                                              'n', 'o', 't']
    assert numpy.array_equal(z_ax.get_images()[0].get_array(), z.T)      # units on y, characters on x
    assert numpy.allclose(r_ax.get_images()[0].get_array(), (1 - z).T)
    assert z_ax.get_images()[0].get_clim() == (0, 1)
    assert [t.get_text() for t in z_ax.get_yticklabels()] == ['3', '5', '8', '9']


def test_gate_heatmap_writes_a_png(tmp_path):
    z = numpy.linspace(0, 1, 40 * 8).reshape(40, 8)
    read_png(plotting.gate_heatmap(list('x' * 40), {'z': z, 'r': z[::-1]}, str(tmp_path / 'g.png')))


def test_recipe_curves(tmp_path, monkeypatch):
    runs = {'book': dict(epoch=[1, 2, 3], seconds=[10, 20, 30], train=[900, 400, 300], valid=[600, 350, 280]),
            'regularised': dict(epoch=[1, 2], seconds=[12, 25], train=[800, 500], valid=[500, 300])}
    read_png(plotting.recipe_curves(runs, str(tmp_path / 'r.png'), title='t'))
    figures = []
    monkeypatch.setattr(plotting, '_save', lambda fig, path, dpi=100: figures.append(fig) or path)
    plotting.recipe_curves(runs, str(tmp_path / 'r.png'))
    by_epoch, by_time = figures[0].axes
    assert [line.get_ydata().tolist() for line in by_epoch.get_lines()] == [[600, 350, 280], [900, 400, 300],
                                                                              [500, 300], [800, 500]]
    assert by_time.get_lines()[1].get_xdata().tolist() == [12, 25]
    assert 'best valid 300.0' in by_time.get_legend().get_texts()[1].get_text()


def test_a_figure_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / 'r.png'
    path.write_bytes(b'old')
    runs = {'a': dict(epoch=[1], seconds=[1], train=[2], valid=[float('nan')])}

    def broken(*args, **kwargs):
        raise RuntimeError('disk full')
    monkeypatch.setattr('matplotlib.figure.Figure.savefig', broken)
    with pytest.raises(RuntimeError):
        plotting.recipe_curves(runs, str(path))
    assert path.read_bytes() == b'old'
    assert [p.name for p in tmp_path.iterdir()] == ['r.png']
