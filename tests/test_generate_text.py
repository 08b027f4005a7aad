"""scripts/generate_text.py on a word model file as scripts/train_better_rnnlm.py writes it (its runs
on character models: test_train_char_rnnlm.py, which trains them)."""
from helpers import script
from helpers.processes import run_python


GENERATE = script('generate_text.py')


def run_script(script, *args, env=None):
    return run_python(script, env, *args)


def test_generation_from_a_word_model_file(tmp_path):
    """A file as scripts/train_better_rnnlm.py writes it (BetterRnnlm with its vocabulary)."""
    import numpy as np
    from ch_gru.better_rnnlm import BetterRnnlm
    words = ['<unk>', 'the', 'market', 'fell', 'and', 'rose', '<eos>']
    np.random.seed(0)
    model = BetterRnnlm(vocab_size=len(words), wordvec_size=8, hidden_size=8)
    for p in model.params:
        p *= 20                                      # a peaky model: <unk> and <eos> come up often
    path = model.save_params(str(tmp_path / 'BetterRnnlm.npz'), vocab=words)
    g = run_script(GENERATE, path, '--prime', 'the market', '--length', '40', '--skip', '<unk>', '--seed', '1')
    assert g.returncode == 0, g.stderr
    assert g.stdout.startswith('the market') and '<unk>' not in g.stdout and '<eos>' not in g.stdout
    stop = run_script(GENERATE, path, '--prime', 'the', '--length', '200', '--stop-at-end', '--samples', '3')
    assert stop.returncode == 0, stop.stderr
    assert len(stop.stdout.splitlines()) == 3
    bad = run_script(GENERATE, path, '--prime', 'the dog')
    assert bad.returncode == 2 and "not in the model's vocabulary ('dog')" in bad.stderr
