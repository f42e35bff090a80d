from mergegate.core.finding import make_fingerprint


def test_fingerprint_ignores_whitespace_and_survives_odd_text():
    a = make_fingerprint("a", "R", "x.py", "x  =   1")
    assert a == make_fingerprint("a", "R", "x.py", "x = 1")
    assert a != make_fingerprint("a", "R", "y.py", "x = 1")
    # Text decoded with surrogateescape from invalid bytes must not crash fingerprinting.
    assert len(make_fingerprint("a", "R", "x.py", "bad \udcff byte")) == 32
