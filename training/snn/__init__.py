"""The spiking-network core: LIF neurons and surrogates, the SDT and TET losses, spike counting,
the gradient-momentum statistics of the two losses, and the private torch APIs they rely on."""
