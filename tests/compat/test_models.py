"""/v1/models and the health probes."""

import openai
import pytest


def test_list_contains_default(client, model):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert model in ids
    for m in models.data:
        assert m.object == "model"
        assert isinstance(m.created, int)
        assert m.owned_by


def test_retrieve(client, model):
    m = client.models.retrieve(model)
    assert m.id == model
    assert m.object == "model"


def test_retrieve_unknown(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.code == "model_not_found"


def test_health(http):
    r = http.get("/health")
    assert r.status_code == 200


def test_ready(http):
    r = http.get("/ready")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"
