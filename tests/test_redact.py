"""redact(): registered secrets and credential-shaped tokens are cut out; ordinary text is not."""

from autoresearch.redact import redact, register_secret


def test_credential_shapes_are_cut_out_without_registering_anything():
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig failed") == \
        "Authorization: Bearer [redacted] failed"
    assert redact("key sk-ant-api03-Zx9_Qw8-Er7Ty6Ui5Op4 was rejected") == \
        "key [redacted] was rejected"
    assert redact("echo: sk-proj-AbCdEfGhIjKlMnOp") == "echo: [redacted]"
    assert redact('headers {"x-api-key": "0f3c2b1a9e8d7c6b"}') == \
        'headers {"x-api-key": "[redacted]"}'
    assert redact("api_key=0f3c2b1a9e8d7c6b5a4f") == "api_key=[redacted]"


def test_ordinary_text_and_masked_echoes_are_left_alone():
    for text in ("Incorrect API key provided: sk-test***1234. See your API key page.",
                 "the API key provided is not valid for this organization",
                 "raise MATRIX_LR 0.04 -> 0.05, bearer of good news",
                 "HTTP 401: invalid x-api-key"):
        assert redact(text) == text


def test_a_registered_secret_is_cut_out_whole_or_in_part():
    secret = "Tr0ub4dor-3-horse-battery-staple-42"
    register_secret(secret)
    register_secret("short")  # too short to tell from ordinary text: ignored
    assert redact(f"proxy said: {secret}!") == "proxy said: [redacted]!"
    assert redact(f"{secret[:3]}***{secret[-9:]}") == f"{secret[:3]}***[redacted]"  # 9 survive
    assert redact(f"{secret[:3]}***{secret[-5:]}") == f"{secret[:3]}***{secret[-5:]}"  # 5 do not
    assert redact("a short story") == "a short story"


def test_a_registered_key_does_not_unmask_another_key_of_its_kind():
    """Keys of one kind share a prefix ("sk-proj-" is RUN characters long): the registered one's
    prefix must not be cut first, leaving another key behind it unrecognised."""
    register_secret("sk-proj-Registered0Key0Of0The0Agent")
    assert redact("also found: sk-proj-AnotherUnregisteredKey9") == "also found: [redacted]"
