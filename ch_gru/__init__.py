"""Models: BetterRnnlm (two GRU layers, dropout, weight tying) and the general Rnnlm."""
