import torch

from polytask.methods.weighting import create


def test_weights_on_simplex_and_vary():
    m = create("rlw", 4, seed=3)
    ws = [m.weights(torch.ones(4, dtype=torch.float64)) for _ in range(20)]
    for w in ws:
        assert (w > 0).all()
        torch.testing.assert_close(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert not torch.allclose(ws[0], ws[1])


def test_normal_softmax_from_own_generator():
    m = create("rlw", 3, seed=7)
    gen = torch.Generator().manual_seed(7)
    z = torch.randn(3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(m.weights(torch.ones(3, dtype=torch.float64)), torch.softmax(z, 0))


def test_seeded_reproducibility_despite_global_rng():
    a = create("rlw", 3, seed=11)
    wa = [a.weights(torch.ones(3)) for _ in range(5)]
    torch.manual_seed(0)
    torch.randn(10)
    b = create("rlw", 3, seed=11)
    wb = [b.weights(torch.ones(3)) for _ in range(5)]
    for x, y in zip(wa, wb):
        torch.testing.assert_close(x, y)
    c = create("rlw", 3, seed=12)
    assert not torch.allclose(wa[0], c.weights(torch.ones(3)))


def test_dtype():
    w = create("rlw", 2).weights(torch.ones(2, dtype=torch.float32))
    assert w.dtype == torch.float32
