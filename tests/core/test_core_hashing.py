"""Content hashes: known values for canonical JSON, a file and a folder, and what changes them."""

import hashlib

from ctbench.core.hashing import canonical_json, file_sha256, json_sha256


def test_canonical_json_sorts_keys_at_every_level_and_stringifies_the_rest(tmp_path):
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": None}}) == '{"a": {"c": null, "d": [1, 2]}, "b": 1}'
    assert canonical_json({"p": tmp_path}) == f'{{"p": "{tmp_path}"}}'


def test_json_sha256_known_value_and_key_order():
    # = `printf %s '{"a": 1, "b": [true, "x"]}' | sha256sum`
    expected = hashlib.sha256(b'{"a": 1, "b": [true, "x"]}').hexdigest()
    assert json_sha256({"b": [True, "x"], "a": 1}) == expected
    assert json_sha256({"a": 1, "b": [True, "x"]}) == expected
    assert expected == "aa0295fad0573faef53f54657c4e972cbcf2294f041033537a66455f28915380"


def test_file_hash_is_sha256sum(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 9000)  # more than one 1 MiB read block
    assert file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()


def test_folder_hash_rule_and_known_value(tmp_path):
    a = tmp_path / "a"
    (a / "variables").mkdir(parents=True)
    (a / "empty").mkdir()
    (a / "saved_model.pb").write_bytes(b"abc")
    (a / "variables" / "v").write_bytes(b"")
    abc = hashlib.sha256(b"abc").hexdigest()
    empty = hashlib.sha256(b"").hexdigest()
    lines = f"saved_model.pb\0{abc}\nvariables/v\0{empty}\n"
    assert file_sha256(a) == hashlib.sha256(lines.encode()).hexdigest()
    assert file_sha256(a) == "d0949d04cf80cb182e07bf58c4827b2246bb6d366cf644a3ad8f1962a61fb188"


def test_folder_hash_depends_on_names_and_bytes_not_location(tmp_path):
    a = tmp_path / "a"
    (a / "variables").mkdir(parents=True)
    (a / "saved_model.pb").write_bytes(b"x")
    (a / "variables" / "v").write_bytes(b"y")
    h = file_sha256(a)
    (a / "variables" / "v").write_bytes(b"z")
    assert file_sha256(a) != h
    (a / "variables" / "v").write_bytes(b"y")
    assert file_sha256(a) == h
    moved = a.rename(tmp_path / "elsewhere")
    assert file_sha256(moved) == h
    (moved / "variables" / "v").rename(moved / "variables" / "w")
    assert file_sha256(moved) != h
