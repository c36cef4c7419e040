"""Users' secrets, without a hub: names and values refused word for word, the Fernet round trip
and key rotation, and the store on sqlite and a real PostgreSQL (values never stored in the
clear, a wrong key changes nothing)."""

import pytest
from cryptography.fernet import Fernet, InvalidToken
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from traitlets import TraitError

from gpuspawner.errors import ConfigError
from gpuspawner.usage.secrets import (
    DISABLED_SENTENCE,
    MAX_SECRETS,
    MAX_VALUE_BYTES,
    SecretError,
    SecretSettings,
    SecretStore,
    UndecryptableSecrets,
    hint,
    kube_secret,
    make_cipher,
    name_problem,
    secret_refs,
    value_problem,
)

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123456789"


# --- names and values ---


@pytest.mark.parametrize("name", ["HF_TOKEN", "WANDB_API_KEY", "_X", "A1", "OPENAI_API_KEY"])
def test_environment_variable_names_are_accepted(name):
    assert name_problem(name) is None


@pytest.mark.parametrize(
    "name, sentence",
    [
        ("", "A secret needs a name, such as HF_TOKEN."),
        (None, "A secret needs a name, such as HF_TOKEN."),
        (
            "hf_token",
            "'hf_token' is not an environment variable name: use capital letters, digits and _,"
            " not starting with a digit (e.g. HF_TOKEN).",
        ),
        (
            "1TOKEN",
            "'1TOKEN' is not an environment variable name: use capital letters, digits and _,"
            " not starting with a digit (e.g. HF_TOKEN).",
        ),
        (
            "HF TOKEN",
            "'HF TOKEN' is not an environment variable name: use capital letters, digits and _,"
            " not starting with a digit (e.g. HF_TOKEN).",
        ),
        (
            "A=B",
            "'A=B' is not an environment variable name: use capital letters, digits and _,"
            " not starting with a digit (e.g. HF_TOKEN).",
        ),
        (
            "HF_TOKEN\n",
            "'HF_TOKEN\\n' is not an environment variable name: use capital letters, digits"
            " and _, not starting with a digit (e.g. HF_TOKEN).",
        ),
        ("A" * 129, "A secret's name may have at most 128 characters."),
        ("PATH", "PATH is set by the hub or the system and cannot be a secret."),
        (
            "NVIDIA_VISIBLE_DEVICES",
            "NVIDIA_VISIBLE_DEVICES is set by the hub or the system and cannot be a secret.",
        ),
        ("GPU_LIMIT", "GPU_LIMIT is set by the hub or the system and cannot be a secret."),
        (
            "JUPYTERHUB_API_TOKEN",
            "JUPYTERHUB_API_TOKEN is set by the hub or the system and cannot be a secret.",
        ),
        (
            "GPUSPAWNER_GPU_UUIDS",
            "GPUSPAWNER_GPU_UUIDS is set by the hub or the system and cannot be a secret.",
        ),
        ("LD_PRELOAD", "LD_PRELOAD is set by the hub or the system and cannot be a secret."),
        (
            "CUDA_VISIBLE_DEVICES",
            "CUDA_VISIBLE_DEVICES is set by the hub or the system and cannot be a secret.",
        ),
    ],
)
def test_bad_names_are_refused_with_the_reason(name, sentence):
    assert name_problem(name) == sentence


@given(st.text(max_size=40))
def test_a_name_is_accepted_only_if_it_is_a_safe_variable_name(name):
    problem = name_problem(name)
    safe = (
        bool(name)
        and all(c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_" for c in name)
        and not name[0].isdigit()
    )
    if problem is None:
        assert safe and not name.startswith(("JUPYTERHUB_", "NVIDIA_", "LD_", "GPUSPAWNER_"))
    elif safe:
        assert problem.endswith("cannot be a secret.")


def test_values_are_refused_without_quoting_them():
    assert value_problem("") == "A secret needs a value."
    assert value_problem(None) == "A secret needs a value."
    assert value_problem("ab\0cd") == "A secret's value may not contain a NUL character."
    assert value_problem("x" * (MAX_VALUE_BYTES + 1)) == (
        "A secret's value may have at most 8192 bytes."
    )
    assert value_problem("é" * (MAX_VALUE_BYTES // 2 + 1)).endswith("8192 bytes.")  # bytes
    assert value_problem("x" * MAX_VALUE_BYTES) is None
    assert value_problem("line one\nline two") is None


def test_the_hint_shows_two_characters_of_long_values_only():
    assert hint(TOKEN) == "…89"
    assert hint("short") == "set"
    assert hint("eleven char") == "set"


# --- keys ---


def test_round_trip_and_rotation_with_multifernet():
    old = make_cipher([KEY_A])
    token = old.encrypt(TOKEN.encode())
    rotated = make_cipher([KEY_B, KEY_A])
    assert rotated.decrypt(token).decode() == TOKEN  # the old key still decrypts
    new_token = rotated.rotate(token)
    assert make_cipher([KEY_B]).decrypt(new_token).decode() == TOKEN
    with pytest.raises(InvalidToken):
        make_cipher([KEY_A]).decrypt(rotated.encrypt(b"x"))  # the first key encrypts
    assert TOKEN.encode() not in token
    assert make_cipher([]) is None


def test_a_bad_key_is_a_start_up_error_that_does_not_quote_it(monkeypatch):
    with pytest.raises(ConfigError) as error:
        make_cipher([KEY_A, "not-a-key"])
    assert str(error.value).startswith(
        "secrets_keys entry 2 is not a Fernet key (32 url-safe base64-encoded bytes;"
    )
    assert "not-a-key" not in str(error.value)
    with pytest.raises(TraitError, match="entry 1 is not a Fernet key"):
        SecretSettings(secrets_keys=["c2hvcnQ="])
    assert SecretSettings(secrets_keys=[KEY_A]).secrets_keys == [KEY_A]
    monkeypatch.setenv("GPUSPAWNER_SECRETS_KEY", "%s, %s" % (KEY_B, KEY_A))
    assert SecretSettings().secrets_keys == [KEY_B, KEY_A]
    monkeypatch.delenv("GPUSPAWNER_SECRETS_KEY")
    assert SecretSettings().secrets_keys == []


# --- the Kubernetes objects ---


def test_the_pod_names_secrets_by_reference_and_the_secret_holds_them():
    assert secret_refs("gpuspawner-secrets-ann", ["WANDB_API_KEY", "HF_TOKEN"]) == {
        "HF_TOKEN": {
            "valueFrom": {
                "secretKeyRef": {
                    "name": "gpuspawner-secrets-ann",
                    "key": "HF_TOKEN",
                    "optional": True,
                }
            }
        },
        "WANDB_API_KEY": {
            "valueFrom": {
                "secretKeyRef": {
                    "name": "gpuspawner-secrets-ann",
                    "key": "WANDB_API_KEY",
                    "optional": True,
                }
            }
        },
    }
    assert secret_refs("", ["HF_TOKEN"]) == {}
    assert kube_secret("s", {"app": "jupyterhub"}, {"HF_TOKEN": "abc"}) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": "s",
            "labels": {
                "app": "jupyterhub",
                "app.kubernetes.io/managed-by": "gpuspawner",
                "gpuspawner.org/secrets": "user",
            },
        },
        "data": {"HF_TOKEN": "YWJj"},
    }


# --- the store, on sqlite and PostgreSQL ---


@pytest.fixture
def stores(db_url):
    made = []

    def make(keys):
        store = SecretStore(db_url, keys)
        made.append(store)
        return store

    yield make
    for store in made:
        store.dispose()


def raw_rows(db_url) -> list[tuple]:
    engine = create_engine(db_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text('SELECT "user", name, token, hint FROM gpuspawner_secrets ORDER BY id')
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_store_sets_replaces_lists_and_deletes_per_user(stores, db_url):
    store = stores([KEY_A])
    assert store.set("ann", "HF_TOKEN", TOKEN) is True
    assert store.set("ann", "WANDB_API_KEY", "wandb-secret-value-42") is True
    assert store.set("bob", "HF_TOKEN", "bobs-own-token-value") is True
    assert store.set("ann", "HF_TOKEN", TOKEN + "X") is False  # replaced
    assert [(i.name, i.hint) for i in store.names("ann")] == [
        ("HF_TOKEN", "…9X"),
        ("WANDB_API_KEY", "…42"),
    ]
    assert store.values("ann") == {
        "HF_TOKEN": TOKEN + "X",
        "WANDB_API_KEY": "wandb-secret-value-42",
    }
    assert store.values("bob") == {"HF_TOKEN": "bobs-own-token-value"}
    assert store.values("carl") == {}
    # at rest: Fernet tokens, never the values
    for _user, _name, token, _hint in raw_rows(db_url):
        assert b"secret-value" not in bytes(token) and b"hf_abc" not in bytes(token)
    assert store.delete("ann", "HF_TOKEN") is True
    assert store.delete("ann", "HF_TOKEN") is False
    assert store.values("ann") == {"WANDB_API_KEY": "wandb-secret-value-42"}
    # a second process (the admin service) opening the same database sees the same
    assert stores([KEY_A]).values("bob") == {"HF_TOKEN": "bobs-own-token-value"}


def test_store_refuses_bad_input_and_too_many_secrets(stores):
    store = stores([KEY_A])
    with pytest.raises(SecretError, match="PATH is set by the hub"):
        store.set("ann", "PATH", "/tmp")
    with pytest.raises(SecretError, match="A secret needs a value."):
        store.set("ann", "HF_TOKEN", "")
    for i in range(MAX_SECRETS):
        store.set("ann", "S%d" % i, "v")
    with pytest.raises(SecretError) as error:
        store.set("ann", "ONE_MORE", "v")
    assert str(error.value) == "You have 50 secrets, the most this hub keeps: delete one first."
    store.set("ann", "S0", "replacing is fine")
    off = stores([])
    assert not off.enabled and off.values("ann") == {}
    with pytest.raises(SecretError) as error:
        off.set("ann", "HF_TOKEN", TOKEN)
    assert str(error.value) == DISABLED_SENTENCE


def test_wrong_key_raises_and_changes_nothing_then_rotation_re_encrypts(stores, db_url):
    stores([KEY_A]).set("ann", "HF_TOKEN", TOKEN)
    stores([KEY_A]).set("bob", "HF_TOKEN", "bobs-own-token-value")
    before = raw_rows(db_url)
    wrong = stores([KEY_B])
    with pytest.raises(UndecryptableSecrets) as error:
        wrong.check_and_rotate()
    assert error.value.owners == ("ann", "bob") and error.value.count == 2
    with pytest.raises(UndecryptableSecrets):
        wrong.values("ann")
    assert raw_rows(db_url) == before  # nothing overwritten or deleted
    assert stores([KEY_A]).values("ann") == {"HF_TOKEN": TOKEN}

    # rotation: the new key first, the old one after it; the check re-encrypts once
    both = stores([KEY_B, KEY_A])
    assert both.check_and_rotate() == 2
    assert both.check_and_rotate() == 0
    assert stores([KEY_B]).values("ann") == {"HF_TOKEN": TOKEN}  # the old key may go now
    with pytest.raises(UndecryptableSecrets):
        stores([KEY_A]).values("ann")


def test_a_spawn_gets_its_users_secrets_and_a_wrong_key_refuses_it(tmp_path):
    from types import SimpleNamespace

    from gpuspawner.lifecycle.refusal import SpawnRefused
    from gpuspawner.usage.secrets import reset_stores, secret_env

    url = "sqlite:///%s" % (tmp_path / "usage.sqlite")
    store = SecretStore(url, [KEY_A])
    store.set("ann", "HF_TOKEN", TOKEN)
    store.dispose()

    def spawner(user, keys, by_reference=False):
        return SimpleNamespace(
            user=SimpleNamespace(name=user), usage_db_url=url, secrets_keys=keys,
            secrets_by_reference=by_reference, secrets_object="", secrets_object_keys=(),
            log=SimpleNamespace(error=lambda *a: None), _log_name="%s's server" % user,
        )  # fmt: skip

    try:
        assert secret_env(spawner("ann", [KEY_A])) == {"HF_TOKEN": TOKEN}
        assert secret_env(spawner("bob", [KEY_A])) == {}
        assert secret_env(spawner("ann", [])) == {}  # off: no secrets, the spawn goes on
        with pytest.raises(SpawnRefused) as refused:
            secret_env(spawner("ann", [KEY_B]))
        assert refused.value.status_code == 503
        assert str(refused.value.jupyterhub_message) == (
            "Your stored secrets cannot be decrypted with this hub's key: ask an admin"
            " (or delete them on the secrets page and store them again)."
        )
        # by reference (Kubernetes): the names synced last, never the values
        kube = spawner("ann", [KEY_A], by_reference=True)
        assert secret_env(kube) == {}
        kube.secrets_object, kube.secrets_object_keys = "gpuspawner-secrets-ann", ("HF_TOKEN",)
        assert TOKEN not in str(secret_env(kube))
        assert list(secret_env(kube)) == ["HF_TOKEN"]
    finally:
        reset_stores()


def test_the_start_up_check_names_whose_secrets_fail_and_rotates_old_ones(tmp_path):
    from types import SimpleNamespace

    from gpuspawner.usage.secrets import check_secrets, reset_stores

    url = "sqlite:///%s" % (tmp_path / "usage.sqlite")
    store = SecretStore(url, [KEY_A])
    store.set("ann", "HF_TOKEN", TOKEN)
    store.dispose()
    said = []
    log = SimpleNamespace(info=lambda *args: said.append(args[0] % args[1:]))

    def hub(keys):
        return SimpleNamespace(usage_db_url=url, secrets_keys=keys, log=log)

    try:
        assert check_secrets(hub([])) == 0  # off: the database is not even opened
        with pytest.raises(ConfigError) as error:
            check_secrets(hub([KEY_B]))
        assert str(error.value) == (
            "secrets_keys cannot decrypt 1 stored secret(s) (of ann) in %s. Put back the key"
            " they were stored with (new keys go first, old ones after them); nothing was"
            " changed." % url
        )
        assert check_secrets(hub([KEY_B, KEY_A])) == 1
        assert said == ["Users' secrets: 1 re-encrypted with the first of secrets_keys"]
        assert check_secrets(hub([KEY_B])) == 0  # the old key may go
    finally:
        reset_stores()
