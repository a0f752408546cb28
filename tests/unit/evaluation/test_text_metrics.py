from tunelab.evaluation.text import exact_match, rouge_l, text_metrics


def test_exact_match_ignores_case_punctuation_and_spacing() -> None:
    assert exact_match("Sport.", " sport ") == 1.0
    assert exact_match("sports", "sport") == 0.0


def test_rouge_l_is_the_f1_of_the_longest_common_subsequence() -> None:
    # LCS of "police kill the gunman" / "police killed the gunman" = police, the, gunman (3 of 4 each side)
    assert rouge_l("police kill the gunman", "police killed the gunman") == 0.75
    # precision 2/2, recall 2/4 -> F1 = 2 * 1 * 0.5 / 1.5
    assert abs(rouge_l("the gunman", "police killed the gunman") - 2 / 3) < 1e-12
    assert rouge_l("", "x") == 0.0 and rouge_l("a b c", "a b c") == 1.0


def test_text_metrics_average_over_pairs() -> None:
    scores = text_metrics(["blue", "red"], ["Blue", "green"])
    assert scores == {"exact_match": 0.5, "rouge_l": 0.5}
