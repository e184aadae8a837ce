"""llama.cpp-style /tokenize and /detokenize."""


def test_round_trip(http):
    tokens = http.post("/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    r = http.post("/detokenize", json={"tokens": tokens})
    assert r.status_code == 200
    assert r.json()["content"] == "Hello world"


def test_with_pieces(http):
    r = http.post("/tokenize", json={"content": "Hello world", "with_pieces": True})
    assert r.status_code == 200
    tokens = r.json()["tokens"]
    plain = http.post("/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert [t["id"] for t in tokens] == plain
    assert all(isinstance(t["piece"], str) for t in tokens)
    assert "".join(t["piece"] for t in tokens) == "Hello world"


def test_add_special_adds_tokens_or_not_fewer(http):
    plain = http.post("/tokenize", json={"content": "Hello", "add_special": False}).json()["tokens"]
    special = http.post("/tokenize", json={"content": "Hello", "add_special": True}).json()["tokens"]
    assert len(special) >= len(plain)
    assert special[len(special) - len(plain):] == plain


def test_tokenize_bad_body(http):
    r = http.post("/tokenize", json={"text": "Hello"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "content"
