"""Files broken the ways real exports break. Every row ends loaded or quarantined."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from graph.store import GraphStore
from loaders.errors import FatalFileError
from loaders.load import FileReport, LoadOptions, load_directory

USERS = "id,name,city,signup_ts\nu1,Ann,Shanghai,1700000000000\nu2,Bo,Beijing,\nu3,Cy,,\n"
MERCHANTS = "id,name,category\nm1,Shop,groceries\nm2,Cafe,restaurants\n"


def _write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (directory / name).write_bytes(data)
    return directory


def _load(store: GraphStore, tmp_path: Path, files: dict[str, str | bytes]
          ) -> dict[str, FileReport]:
    directory = _write(tmp_path / "in", {"users.csv": USERS, "merchants.csv": MERCHANTS,
                                         **files})
    reports = load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    for r in reports:
        assert r.rows == r.loaded + r.rejected, r
    return {r.file: r for r in reports}


def _rejected(tmp_path: Path, source: str) -> list[dict[str, str]]:
    path = tmp_path / "quarantine" / f"{source}.rejected.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _paid(store: GraphStore, user: str = "u1") -> dict[str, dict[str, object]]:
    return {r.key: r.properties for r in store.relationships("PAID", [user])}


def test_wrong_types_are_quarantined_naming_the_field(store: GraphStore, tmp_path: Path
                                                      ) -> None:
    paid = (
        "src,dst,id,amount,ts,is_fraud\n"
        "u1,m1,p1,12.5,1700000000000,0\n"        # line 2: fine
        "u1,m1,p2,abc,1700000000000,0\n"         # line 3: amount
        "u1,m1,p3,5,yesterday,0\n"               # line 4: ts
        "u1,m1,p4,5,1700000000000,7\n"           # line 5: is_fraud out of range
        "u1,m1,p5,-3,2024-01-02T03:04:05Z,1\n"   # line 6: negative amount
        "u1,m1,p6,5,2024-01-02T03:04:05+08:00,1\n"  # line 7: fine, ISO with offset
        "u1,m1,p7,5.0,2024-01-02,0\n"            # line 8: fine, date only
        "u1,m1,p8,1e400,1,0\n"                   # line 9: infinite
    )
    feats = (
        "id,credit_score,income,repayment_history,months_on_book\n"
        "u1,700,120000,000010,6\n"
        "u2,2000,50000,0,1\n"             # line 3: score out of range
        "u3,650,lots,00x,2.5\n"           # line 4: three bad fields
    )
    reports = _load(store, tmp_path, {"paid.csv": paid, "credit_features.csv": feats})
    assert reports["paid.csv"].loaded == 3 and reports["paid.csv"].rejected == 5
    rejected = {r["id"]: r for r in _rejected(tmp_path, "paid.csv")}
    assert rejected["p2"]["_line"] == "3" and rejected["p2"]["_error"].startswith("amount:")
    assert rejected["p3"]["_line"] == "4" and "ts:" in rejected["p3"]["_error"]
    assert "is_fraud:" in rejected["p4"]["_error"]
    assert "amount:" in rejected["p5"]["_error"]
    assert "amount:" in rejected["p8"]["_error"] and rejected["p8"]["_line"] == "9"
    assert rejected["p2"]["amount"] == "abc"  # original values are kept
    props = _paid(store)
    assert set(props) == {"p1", "p6", "p7"}
    assert props["p6"]["ts"] == 1704135845000
    assert props["p7"]["ts"] == 1704153600000
    feat_rejects = {r["id"]: r for r in _rejected(tmp_path, "credit_features.csv")}
    assert set(feat_rejects) == {"u2", "u3"}
    err = feat_rejects["u3"]["_error"]
    assert "income:" in err and "repayment_history:" in err and "months_on_book:" in err
    user = store.get_nodes("User", ["u1"])[0]
    assert user is not None and user.properties["credit_score"] == 700


def test_missing_ids_are_quarantined(store: GraphStore, tmp_path: Path) -> None:
    users = "id,name\nu1,Ann\n,NoId\n   ,Blank\nu4,Dee\n"
    paid = "src,dst,id,amount\nu1,m1,p1,1\n,m1,p2,1\nu1,,p3,1\nu1,m1,,1\n"
    reports = _load(store, tmp_path, {"users.csv": users, "paid.csv": paid})
    assert (reports["users.csv"].loaded, reports["users.csv"].rejected) == (2, 2)
    assert (reports["paid.csv"].loaded, reports["paid.csv"].rejected) == (1, 3)
    errors = [r["_error"] for r in _rejected(tmp_path, "paid.csv")]
    assert errors == ["src: missing", "dst: missing", "id: missing"]
    assert [r["_line"] for r in _rejected(tmp_path, "users.csv")] == ["3", "4"]


def test_truncated_lines_are_quarantined_with_their_line(store: GraphStore, tmp_path: Path
                                                         ) -> None:
    paid = ("src,dst,id,amount,ts\n"
            "u1,m1,p1,1,5\n"
            "u1,m1,p2\n"          # line 3: cut short
            "u1,m1,p3,1,5,9,9\n"  # line 4: too many fields
            "u1,m1,p4,1,5\n"
            "u1,m1,p5,2")          # line 6: the file ends mid-row
    reports = _load(store, tmp_path, {"paid.csv": paid})
    r = reports["paid.csv"]
    assert (r.rows, r.loaded, r.rejected) == (5, 2, 3)
    rejected = _rejected(tmp_path, "paid.csv")
    assert [(x["_line"], x["id"]) for x in rejected] == [("3", "p2"), ("4", "p3"), ("6", "p5")]
    assert "truncated" in rejected[0]["_error"] and rejected[1]["_raw"] == "u1,m1,p3,1,5,9,9"
    assert set(_paid(store)) == {"p1", "p4"}


def test_stray_quote_does_not_swallow_the_rows_after_it(store: GraphStore, tmp_path: Path
                                                       ) -> None:
    paid = ("src,dst,id,amount,channel\n"
            "u1,m1,p1,1,app\n"
            'u1,m1,p2,1,"app\n'   # line 3: a quote left open
            "u1,m1,p3,1,app\n"
            "u1,m1,p4,1,qr\n"
            'u1,m1,p5,1,a"b\n'
            "u1,m1,p6,1,pos\n")
    reports = _load(store, tmp_path, {"paid.csv": paid})
    r = reports["paid.csv"]
    assert r.rows == 6 and r.rows == r.loaded + r.rejected
    rejected = _rejected(tmp_path, "paid.csv")
    assert "3" in [x["_line"] for x in rejected]
    assert any("quote" in x["_error"] for x in rejected)
    loaded = set(_paid(store))
    assert {"p1", "p3", "p4", "p6"} <= loaded
    assert "p2" not in loaded


def test_quoted_newlines_keep_values_and_line_numbers(store: GraphStore, tmp_path: Path
                                                     ) -> None:
    merchants = ('id,name,category\n'
                 'm1,"Two\nlines",groceries\n'   # lines 2-3
                 'm2,"Three\nline\nname",food\n'  # lines 4-6
                 ',Nameless,food\n'               # line 7
                 'm2,Cafe,restaurants\n')         # line 8
    _load(store, tmp_path, {"merchants.csv": merchants})
    node = store.get_nodes("Merchant", ["m1"])[0]
    assert node is not None and node.properties["name"] == "Two\nlines"
    assert [r["_line"] for r in _rejected(tmp_path, "merchants.csv")] == ["7"]


def test_repeated_keys_later_values_win(store: GraphStore, tmp_path: Path) -> None:
    users = "id,name,city\nu1,Ann,Shanghai\nu2,Bo,Beijing\nu1,,Hangzhou\nu3,Cy,\n"
    paid = "src,dst,id,amount\nu1,m1,p1,1\nu1,m1,p1,2\n"
    holds = "src,dst,limit\n"
    reports = _load(store, tmp_path, {"users.csv": users, "paid.csv": paid,
                                      "holds.csv": holds})
    assert reports["users.csv"].loaded == 4
    assert store.counts()["nodes"]["User"] == 3
    u1 = store.get_nodes("User", ["u1"])[0]
    assert u1 is not None
    assert u1.properties["city"] == "Hangzhou" and u1.properties["name"] == "Ann"
    assert _paid(store)["p1"]["amount"] == 2.0
    assert reports["holds.csv"].rows == 0


def test_dangling_references_are_quarantined_not_invented(store: GraphStore, tmp_path: Path
                                                         ) -> None:
    paid = "src,dst,id,amount\nu1,m1,p1,1\nghost,m1,p2,1\nu1,nowhere,p3,1\nx,y,p4,1\n"
    referred = "src,dst,ts\nu1,u2,5\nu1,zz,5\n"
    feats = "id,credit_score\nu1,700\nnobody,600\n"
    reports = _load(store, tmp_path, {"paid.csv": paid, "referred.csv": referred,
                                      "credit_features.csv": feats})
    assert (reports["paid.csv"].loaded, reports["paid.csv"].rejected) == (1, 3)
    errors = {r["id"]: r["_error"] for r in _rejected(tmp_path, "paid.csv")}
    assert errors["p2"] == "src: no User with id 'ghost'"
    assert errors["p3"] == "dst: no Merchant with id 'nowhere'"
    assert "src:" in errors["p4"] and "dst:" in errors["p4"]
    assert reports["referred.csv"].rejected == 1
    assert reports["credit_features.csv"].rejected == 1
    assert store.get_nodes("User", ["ghost", "nobody", "zz"]) == [None, None, None]
    assert store.get_nodes("Merchant", ["nowhere"]) == [None]


@pytest.mark.parametrize("content", [
    "id,name\nu1,Jos\xe9\n".encode("latin-1"),
    "id,name\nu1,Ann\n".encode("utf-16"),
    "id,name\nu1,\u5f20\u4f1f\n".encode("gbk"),
])
def test_wrong_encoding_is_fatal_and_nothing_is_written(store: GraphStore, tmp_path: Path,
                                                        content: bytes) -> None:
    directory = _write(tmp_path / "in", {"merchants.csv": MERCHANTS, "users.csv": content})
    with pytest.raises(FatalFileError, match="users.csv") as info:
        load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    assert "UTF" in str(info.value)
    assert sum(store.counts()["nodes"].values()) == 0


def test_missing_required_column_is_fatal(store: GraphStore, tmp_path: Path) -> None:
    directory = _write(tmp_path / "in", {"users.csv": USERS,
                                         "paid.csv": "src,dst,amount\nu1,m1,3\n"})
    with pytest.raises(FatalFileError, match=r"paid.csv: missing required column id"):
        load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    assert sum(store.counts()["nodes"].values()) == 0


def test_empty_file_and_repeated_columns_are_fatal(tmp_path: Path,
                                                   embedded_store: GraphStore) -> None:
    for name, content, problem in [
        ("users.csv", "", "empty file"),
        ("users.csv", "id,name,name\nu1,a,b\n", "repeated column"),
    ]:
        directory = _write(tmp_path / name.replace(".", "_") / problem.replace(" ", "_"),
                           {name: content})
        with pytest.raises(FatalFileError, match=problem):
            load_directory(embedded_store, directory, LoadOptions(tmp_path / "q"))


def test_bom_crlf_blank_lines_and_extra_columns(store: GraphStore, tmp_path: Path) -> None:
    users = ("\ufeffid,name,shoe_size\r\nu1,Ann,38\r\n\r\nu2,Bo,44\r\n"
             "u3,\"Cy\r\nDee\",40\r\nu4,Ed,41\r\n,,\r\n")
    reports = _load(store, tmp_path, {"users.csv": users})
    r = reports["users.csv"]
    # The line of commas is a row without an id (rejected); the empty line is not a row.
    assert (r.rows, r.loaded, r.rejected) == (5, 4, 1)
    assert any("shoe_size" in w for w in r.warnings)
    assert any("1 empty line skipped" in w for w in r.warnings)
    assert store.counts()["nodes"]["User"] == 4


def test_parquet_with_wrong_values(store: GraphStore, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = _write(tmp_path / "in", {"users.csv": USERS, "merchants.csv": MERCHANTS})
    pq.write_table(pa.table({
        "src": ["u1", "u1", None, "u9"],
        "dst": ["m1", "m2", "m1", "m1"],
        "id": ["p1", "p2", "p3", "p4"],
        "amount": pa.array([1.5, -2.0, 3.0, 4.0]),
        "ts": pa.array([1, 2, 3, 4], pa.timestamp("ms", tz="UTC")),
    }), directory / "paid.parquet")
    reports = load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    r = {x.file: x for x in reports}["paid.parquet"]
    assert (r.rows, r.loaded, r.rejected) == (4, 1, 3)
    rows = {x["id"]: x for x in _rejected(tmp_path, "paid.parquet")}
    assert rows["p2"]["_line"] == "2" and rows["p2"]["_error"].startswith("amount:")
    assert rows["p3"]["_error"] == "src: missing"
    assert rows["p4"]["_error"] == "src: no User with id 'u9'"
    assert _paid(store)["p1"]["ts"] == 1


def test_quarantine_is_rewritten_not_appended(store: GraphStore, tmp_path: Path) -> None:
    paid = "src,dst,id,amount\nu1,m1,p1,x\n"
    _load(store, tmp_path, {"paid.csv": paid})
    _load(store, tmp_path, {"paid.csv": paid})
    assert len(_rejected(tmp_path, "paid.csv")) == 1
    _load(store, tmp_path, {"paid.csv": "src,dst,id,amount\nu1,m1,p1,1\n"})
    assert _rejected(tmp_path, "paid.csv") == []


# -- issue 15: one RFC 4180 parser, every data line counted --------------------------------
def _only(store: GraphStore, tmp_path: Path, name: str, content: str | bytes
          ) -> FileReport:
    directory = _write(tmp_path / "only", {name: content})
    reports = load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    for r in reports:
        assert r.rows == r.loaded + r.rejected, r
    return reports[0]


def test_d1_open_quote_in_all_quoted_file_costs_one_row(store: GraphStore, tmp_path: Path
                                                       ) -> None:
    users = '"id","name","city"\n"x1","A","C"\n"x2,Open,C\n"x3","B","C"\n"x4","D","C"\n'
    r = _only(store, tmp_path, "users.csv", users)
    assert (r.rows, r.loaded, r.rejected) == (4, 3, 1)
    [bad] = _rejected(tmp_path, "users.csv")
    assert bad["_line"] == "3" and "quote" in bad["_error"] and bad["_raw"] == '"x2,Open,C'
    got = store.get_nodes("User", ["x1", "x3", "x4"])
    assert all(n is not None for n in got)
    assert store.counts()["nodes"]["User"] == 3  # no id with a newline in it


def test_d2_open_quote_in_one_column_file_does_not_swallow_the_rest(
        store: GraphStore, tmp_path: Path) -> None:
    r = _only(store, tmp_path, "phones.csv", 'id\n+861\n"+862\n+863\n+864\n+865\n')
    assert (r.rows, r.loaded, r.rejected) == (5, 4, 1)
    assert [x["_line"] for x in _rejected(tmp_path, "phones.csv")] == ["3"]
    assert all(n is not None for n in store.get_nodes("Phone", ["+861", "+863", "+864",
                                                                "+865"]))
    assert store.counts()["nodes"]["Phone"] == 4


def test_d2_empty_key_lines_are_counted_and_quarantined(store: GraphStore, tmp_path: Path
                                                       ) -> None:
    lines = [f"+86{i}" for i in range(100)]
    for i in range(0, 100, 10):
        lines[i] = '""'
    r = _only(store, tmp_path, "phones.csv", "id\n" + "\n".join(lines) + "\n\n")
    assert (r.rows, r.loaded, r.rejected) == (100, 90, 10)
    assert {x["_error"] for x in _rejected(tmp_path, "phones.csv")} == {"id: missing"}
    assert any("1 empty line skipped" in w for w in r.warnings)


def test_d8_quoted_field_spanning_lines_with_commas_loads(store: GraphStore, tmp_path: Path
                                                         ) -> None:
    users = 'id,name,city\nx1,"a, b, c\nd, e, f",Beijing\nx2,ok,Beijing\n'
    r = _only(store, tmp_path, "users.csv", users)
    assert (r.rows, r.loaded, r.rejected) == (2, 2, 0)
    x1 = store.get_nodes("User", ["x1"])[0]
    assert x1 is not None and x1.properties["name"] == "a, b, c\nd, e, f"


def test_quoted_id_with_a_line_break_is_rejected(store: GraphStore, tmp_path: Path) -> None:
    r = _only(store, tmp_path, "phones.csv", 'id\n+861\n"+862\n+863"\n+864\n')
    assert (r.rows, r.loaded, r.rejected) == (3, 2, 1)
    [bad] = _rejected(tmp_path, "phones.csv")
    assert bad["_line"] == "3" and "line break" in bad["_error"]


def test_open_quote_is_bounded_and_reading_resumes(store: GraphStore, tmp_path: Path) -> None:
    from loaders.reader import MAX_RECORD_LINES

    body = [f"u{i},n{i},c" for i in range(MAX_RECORD_LINES + 50)]
    body[5] = 'u5,"open,c'
    body[-1] = 'u_last,"closes late",c'  # a quote far below must not pair with line 7
    r = _only(store, tmp_path, "users.csv", "id,name,city\n" + "\n".join(body) + "\n")
    assert (r.rows, r.loaded, r.rejected) == (len(body), len(body) - 1, 1)
    [bad] = _rejected(tmp_path, "users.csv")
    assert bad["_line"] == "7" and "quote" in bad["_error"]


def test_text_after_closing_quote_is_rejected_not_merged(store: GraphStore, tmp_path: Path
                                                        ) -> None:
    r = _only(store, tmp_path, "users.csv", 'id,name\nu1,"Ann"ie\nu2,Bo\n')
    assert (r.rows, r.loaded, r.rejected) == (2, 1, 1)
    assert "after a closing quote" in _rejected(tmp_path, "users.csv")[0]["_error"]


def test_d11_a_huge_cell_is_quarantined_with_a_bounded_raw(store: GraphStore, tmp_path: Path
                                                          ) -> None:
    from loaders.reader import MAX_RAW_CHARS
    from loaders.validate import MAX_CELL_CHARS

    big = "x" * (10 << 20)
    mid = "y" * (MAX_CELL_CHARS + 1)
    users = f"id,name\nu1,Ann\nu2,{big}\nu3,{mid}\nu4,Dee\n"
    r = _only(store, tmp_path, "users.csv", users)
    assert (r.rows, r.loaded, r.rejected) == (4, 2, 2)
    rows = {x["_line"]: x for x in _rejected(tmp_path, "users.csv")}
    assert "longer than" in rows["3"]["_error"] and len(rows["3"]["_raw"]) < MAX_RAW_CHARS + 100
    assert rows["4"]["_error"].startswith("name: longer than")
    assert store.get_nodes("User", ["u2", "u3"]) == [None, None]


def test_d4_signed_epoch_milliseconds_load(store: GraphStore, tmp_path: Path) -> None:
    users = "id,signup_ts,fraud_ts\nu1,+1704067200000,-5\nu2,+12x,\n"
    r = _only(store, tmp_path, "users.csv", users)
    assert (r.rows, r.loaded, r.rejected) == (2, 1, 1)
    u1 = store.get_nodes("User", ["u1"])[0]
    assert u1 is not None and u1.properties["signup_ts"] == 1704067200000
    assert u1.properties["fraud_ts"] == -5
    assert "signup_ts:" in _rejected(tmp_path, "users.csv")[0]["_error"]


def _parquet(directory: Path, name: str, table: object) -> None:
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / name)  # type: ignore[arg-type]


def test_d3_huge_or_infinite_integers_in_parquet_are_rejected(store: GraphStore,
                                                              tmp_path: Path) -> None:
    import pyarrow as pa

    directory = _write(tmp_path / "in", {"users.csv": USERS,
                                         "devices.csv": "id\nd1\nd2\nd3\nd4\n"})
    _parquet(directory, "uses.parquet", pa.table({
        "src": ["u1", "u1", "u2", "u3"], "dst": ["d1", "d2", "d3", "d4"],
        "sessions": pa.array([3.0, float("inf"), 1e30, float("-inf")])}))
    reports = load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    r = {x.file: x for x in reports}["uses.parquet"]
    assert (r.rows, r.loaded, r.rejected) == (4, 1, 3)
    errors = [x["_error"] for x in _rejected(tmp_path, "uses.parquet")]
    assert all(e.startswith("sessions:") and "out of range" in e for e in errors), errors
    rels = list(store.relationships("USES", ["u1", "u2", "u3"]))
    assert [x.properties.get("sessions") for x in rels] == [3]


@pytest.mark.parametrize("column", [
    "list", "struct", "invalid_utf8_binary",
])
def test_d5_unexpected_parquet_types_are_fatal_before_writing(
        store: GraphStore, tmp_path: Path, column: str) -> None:
    import pyarrow as pa

    value = {"list": pa.array([[1, 2]]), "struct": pa.array([{"a": 1}]),
             "invalid_utf8_binary": pa.array([b"\xff\xfe"], pa.binary())}[column]
    directory = _write(tmp_path / "in", {"merchants.csv": MERCHANTS})
    _parquet(directory, "users.parquet", pa.table({"id": value, "name": ["x"]}))
    with pytest.raises(FatalFileError, match=r"users.parquet: column 'id' has"):
        load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    assert sum(store.counts()["nodes"].values()) == 0


def test_d6_out_of_range_parquet_times_are_rejected(store: GraphStore, tmp_path: Path
                                                    ) -> None:
    import pyarrow as pa

    directory = tmp_path / "in"
    _parquet(directory, "users.parquet", pa.table({
        "id": ["u1", "u2", "u3", "u4"],
        "signup_ts": pa.array([2**62, 1000, -(2**62), 5], pa.timestamp("ms")),
        "fraud_ts": pa.array([2**62, 7, 8, 2**40], pa.int64())}))
    reports = load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    r = reports[0]
    assert (r.rows, r.loaded, r.rejected) == (4, 2, 2)
    u2, u4 = store.get_nodes("User", ["u2", "u4"])
    assert u2 is not None and u2.properties["signup_ts"] == 1000
    assert u4 is not None and u4.properties["fraud_ts"] == 2**40
    rows = {x["id"]: x for x in _rejected(tmp_path, "users.parquet")}
    assert set(rows) == {"u1", "u3"}
    assert "out of range" in rows["u1"]["_error"] and str(2**62) in rows["u1"]["signup_ts"]


def test_d7_corrupt_parquet_page_stops_the_load_before_writing(
        store: GraphStore, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = _write(tmp_path / "in", {"users.csv": USERS, "merchants.csv": MERCHANTS})
    n = 50_000
    path = directory / "paid.parquet"
    pq.write_table(pa.table({"src": ["u1"] * n, "dst": ["m1"] * n,
                             "id": [f"p{i}" for i in range(n)],
                             "amount": pa.array([float(i) for i in range(n)])}),
                   path, compression="none", row_group_size=n, data_page_size=4096)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    middle = (len(data) - footer) // 2
    data[middle:middle + 4096] = b"\xff" * 4096  # a data page, the footer intact
    path.write_bytes(bytes(data))
    with pytest.raises(FatalFileError, match=r"paid.parquet: .*cannot be read"):
        load_directory(store, directory, LoadOptions(tmp_path / "quarantine"))
    assert sum(store.counts()["nodes"].values()) == 0


@pytest.mark.parametrize("size", [-1, 0])
def test_d9_batch_size_must_be_positive(size: int, tmp_path: Path) -> None:
    from loaders.errors import LoadError

    with pytest.raises(LoadError, match="batch size"):
        LoadOptions(tmp_path / "q", batch_size=size)


def test_d10_model_scores_cannot_be_loaded_from_a_file(store: GraphStore, tmp_path: Path
                                                      ) -> None:
    users = ("id,name,fraud_risk,own_risk,relational_risk,model_version,scored_at\n"
             "u1,Ann,7.5,-1,0.2,evil,1\n")
    r = _only(store, tmp_path, "users.csv", users)
    assert (r.rows, r.loaded) == (1, 1)
    assert any("written by the model only" in w and "fraud_risk" in w for w in r.warnings)
    u1 = store.get_nodes("User", ["u1"])[0]
    assert u1 is not None and u1.properties["name"] == "Ann"
    assert not {"fraud_risk", "own_risk", "relational_risk", "model_version",
                "scored_at"} & set(u1.properties)
