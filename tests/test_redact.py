from robustmm.redact import has_secret, redact


def test_userinfo_is_hidden_everywhere_in_the_text():
    text = "cannot reach http://alice:s3cret@mlflow.example:5000/api and postgresql://u:p@db/x"
    out = redact(text)
    assert "s3cret" not in out and "alice" not in out and "u:p@" not in out
    assert out == "cannot reach http://***@mlflow.example:5000/api and postgresql://***@db/x"
    assert has_secret(text) and not has_secret(out)


def test_plain_uris_and_paths_are_left_alone():
    for text in ("sqlite:///runs/x/mlflow.db", "http://127.0.0.1:5000", "user@host is not a URI", "s3://bucket/a@b"):
        assert redact(text) == text and not has_secret(text)
