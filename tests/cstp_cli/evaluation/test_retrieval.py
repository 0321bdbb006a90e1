"""Retrieval metrics (METHOD §7): recall at k, the hit rule, chunked top-k with stable ties."""

from __future__ import annotations

import numpy as np

from cstp_cli.evaluation import retrieval as rt


def test_gallery_as_its_own_query_has_recall_at_1_of_100():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(50, 16))
    labels = rng.integers(0, 5, 50)
    rec, _, top = rt.retrieval_report(g, g, labels, labels)
    assert rec["R@1"] == 100.0
    assert np.array_equal(top[:, 0], np.arange(50))


def test_recall_is_monotone_in_k():
    rng = np.random.default_rng(1)
    q, g = rng.normal(size=(40, 8)), rng.normal(size=(200, 8))
    rec, _, _ = rt.retrieval_report(q, g, rng.integers(0, 10, 40), rng.integers(0, 10, 200))
    values = [rec[f"R@{k}"] for k in rt.RECALL_KS]
    assert values == sorted(values)
    assert values[0] < 100.0


def test_ties_rank_the_lower_gallery_index_first():
    g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # 0, 2, 3 tie (cosine 1)
    _, idx = rt.running_topk(np.array([[1.0, 0.0]]), g, 3, gallery_chunk=2)
    assert idx[0].tolist() == [0, 2, 3]


def test_chunked_topk_equals_full_topk():
    rng = np.random.default_rng(2)
    q = rng.integers(-3, 4, size=(37, 6)).astype(np.float64)  # small integers: many exact ties
    g = rng.integers(-3, 4, size=(211, 6)).astype(np.float64)
    s_full, i_full = rt.running_topk(q, g, 20, query_chunk=1000, gallery_chunk=10_000)
    s_chunk, i_chunk = rt.running_topk(q, g, 20, query_chunk=5, gallery_chunk=13)
    assert np.array_equal(i_full, i_chunk) and np.array_equal(s_full, s_chunk)
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    ref = -np.sort(-(qn @ gn.T), axis=1)[:, :20]
    assert np.allclose(s_full, ref, rtol=1e-7, atol=1e-7)  # the 20 best scores, best first
    ties = s_full[:, 1:] == s_full[:, :-1]
    assert ties.any() and np.all(i_full[:, 1:][ties] > i_full[:, :-1][ties])  # equal scores: lower index first


def test_topk_is_cut_at_the_gallery_size():
    s, i = rt.running_topk(np.ones((2, 3)), np.eye(3), 50)
    assert i.shape == (2, 3)


def test_recall_hit_rule_uses_any_of_top_k():
    top = np.array([[3, 1, 2], [0, 1, 2]])
    rec = rt.recall_at_k(top, np.array([1, 9]), np.array([0, 1, 2, 3]), ks=(1, 2, 3))
    assert rec == {"R@1": 0.0, "R@2": 50.0, "R@3": 50.0}
