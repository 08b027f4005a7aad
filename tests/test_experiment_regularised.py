"""scripts/experiment_regularised.py: the variants it runs (no training here; its corpora: test_derived.py)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'scripts'))

import experiment_regularised as experiment  # noqa: E402
import train_better_rnnlm as script  # noqa: E402


def test_each_ablation_takes_out_exactly_its_piece():
    v = experiment.variants(1200, 10)
    full, _ = script.parse_recipe_args(v['regularised-short'][0])
    assert full.recipe == 'regularised' and full.max_epoch == 10
    changed = {}
    for piece in experiment.PIECES:
        args, _ = script.parse_recipe_args(v[f'no-{piece}'][0])
        changed[piece] = {k for k, value in vars(args).items() if vars(full)[k] != value}
    assert changed == {'locked-dropout': {'locked_dropout'}, 'embed-dropout': {'embed_dropout'},
                       'weight-drop': {'weight_drop'}, 'ar-tar': {'ar_alpha', 'tar_beta'},
                       'asgd': {'asgd_nonmono'}, 'variable-bptt': {'variable_bptt'},
                       'weight-decay': {'weight_decay'}}
    book, _ = script.parse_recipe_args(v['book'][0])
    assert (book.recipe, book.lr, book.dropout, book.max_grad, book.hidden_size, book.max_epoch) == \
        ('book', 20.0, 0.5, 0.25, 200, 12)


def test_wider_variants_change_only_the_model_size():
    v = experiment.variants(1200, 10, ablation_hidden=300)
    for recipe in ('book', 'regularised'):
        base, _ = script.parse_recipe_args(v[recipe][0])
        wide, _ = script.parse_recipe_args(v[f'{recipe}-h300'][0])
        changed = {k: value for k, value in vars(wide).items() if vars(base)[k] != value}
        assert changed == {'wordvec_size': 300, 'hidden_size': 300}
    ablation, _ = script.parse_recipe_args(v['no-asgd'][0])
    assert (ablation.hidden_size, ablation.wordvec_size, ablation.asgd_nonmono) == (300, 300, 0)
    seeded, _ = script.parse_recipe_args(experiment.variants(1200, 10, seed=2)['regularised-h300'][0])
    wide, _ = script.parse_recipe_args(v['regularised-h300'][0])
    assert {k for k, value in vars(seeded).items() if vars(wide)[k] != value} == {'seed'} and seeded.seed == 2


def test_an_unknown_variant_is_a_one_line_error(capsys, tmp_path):
    import pytest
    with pytest.raises(SystemExit) as exc:
        experiment.main(['--only', 'regularised,nope', '--out', str(tmp_path)])
    assert exc.value.code == 2
    assert 'unknown variant nope: choose from book, regularised' in capsys.readouterr().err


def test_extra_flags_reach_every_run(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(experiment, 'run_variant', lambda name, flags, files, out, threads=1: seen.append(flags))
    monkeypatch.setattr(experiment, 'corpus_files', lambda name, data, out: os.makedirs(out) or ('t', 'v', 's'))
    monkeypatch.setattr(experiment, 'plot', lambda *a: None)
    experiment.main(['--only', 'no-asgd,book', '--extra=--weight-decay 0 --asgd-latest 0', '--out', str(tmp_path)])
    assert len(seen) == 2 and all(f[-4:] == ['--weight-decay', '0', '--asgd-latest', '0'] for f in seen)
    args, _ = script.parse_recipe_args(seen[0])
    assert (args.weight_decay, args.asgd_latest, args.asgd_nonmono) == (0.0, 0.0, 0)
