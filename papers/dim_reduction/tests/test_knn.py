import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import RandomizedSearchCV
from sklearn.neighbors import KNeighborsClassifier

from papers.dim_reduction.knn import candidate_ks, encode_labels, k_range, knn_score, neighbors, vote_accuracies


def test_k_range_is_the_papers():
    ks = k_range(60000)
    assert ks[0] == 1 and ks[-1] == 243 and len(ks) == 243  # int(sqrt(60000)) = 244
    assert k_range(50000)[-1] == 222


def test_vote_by_hand():
    # two queries, neighbours' labels nearest first
    labels = np.array([[1, 0, 0, 2], [2, 2, 1, 1]])
    y = np.array([0, 2])
    acc = vote_accuracies(labels, y, [1, 2, 3, 4], n_classes=3)
    # k=1: preds 1, 2 -> 0.5; k=2: tie {1,0}->0, {2}->2 -> 1.0; k=3: 0, 2 -> 1.0; k=4: tie {0,1,2}/{1,2} -> 0, 1 -> 0.5
    assert acc == {1: 0.5, 2: 1.0, 3: 1.0, 4: 0.5}
    with pytest.raises(ValueError, match="needs more than the 4 neighbours"):
        vote_accuracies(labels, y, [5], 3)


def test_candidates_follow_randomized_search_sampling():
    ks = candidate_ks(1400, 20, seed=3)
    search = RandomizedSearchCV(KNeighborsClassifier(), {"n_neighbors": k_range(1400)}, n_iter=20, random_state=3)
    from sklearn.model_selection import ParameterSampler

    expected = [p["n_neighbors"] for p in ParameterSampler(search.param_distributions, 20, random_state=3)]
    assert ks == expected and len(set(ks)) == 20
    assert candidate_ks(100, None, 0) == list(range(1, 10))


@pytest.fixture(scope="module")
def projected_digits():
    """Digits projected by PCA: real-valued, so no exact distance ties (as in the paper's projections)."""
    x, y = load_digits(return_X_y=True)
    z = PCA(12, random_state=0).fit_transform(x / 16)
    return z[:1300], y[:1300], z[1300:], y[1300:]


def test_equals_scikit_learn_randomized_search(projected_digits):
    x_tr, y_tr, x_te, y_te = projected_digits
    ours = knn_score(x_tr, y_tr, x_te, y_te, n_iter=15, folds=5, seed=7)
    ref = RandomizedSearchCV(
        KNeighborsClassifier(), {"n_neighbors": k_range(len(y_tr))}, n_iter=15, cv=5, random_state=7
    ).fit(x_tr, y_tr)
    assert ours.candidates == [p["n_neighbors"] for p in ref.cv_results_["params"]]
    np.testing.assert_allclose(ours.cv_scores, ref.cv_results_["mean_test_score"], rtol=0, atol=1e-12)
    assert ours.best_k == ref.best_params_["n_neighbors"]
    assert ours.test_accuracy == ref.score(x_te, y_te)
    # item by item, as the bootstrap over test items needs: the same right and wrong answers
    assert np.array_equal(ours.test_correct, ref.predict(x_te) == y_te) and not ours.test_correct.all()


def test_torch_backend_finds_the_same_neighbours(projected_digits):
    pytest.importorskip("torch")
    x_tr, _, x_te, _ = projected_digits
    a = neighbors(x_tr, x_te, 15, backend="sklearn")
    b = neighbors(x_tr, x_te, 15, backend="torch")
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="unknown k-NN backend 'faiss'"):
        neighbors(x_tr, x_te, 3, backend="faiss")


def test_encode_labels_maps_to_class_order():
    tr, te, n = encode_labels(np.array([7, 3, 7, 9]), np.array([9, 3, 4]))
    assert tr.tolist() == [1, 0, 1, 2] and te.tolist() == [2, 0, -1] and n == 3
