"""Model-agnostic loss-landscape engine: curvature operators, spectra, surfaces, statistics.

Takes any ``nn.Module``, a loss callable and fixed evaluation batches; knows nothing of spikes.
"""
