"""An S3 LIST for moto that costs what S3's does: in proportion to the keys
it returns, not to every key of the bucket.

moto 5 answers a LIST by copying and walking the whole bucket
(`S3Backend.list_objects`, `for key_name, key in bucket.keys.items()`), then
sorting what matched and cutting the page out of it. So on moto a listing of
a small prefix costs in proportion to everything written so far, and a
backfill of n objects that lists once per object costs n². S3 does not
behave that way, and the backfill benchmark (tests/src/bin/backfill-bench.rs)
is about how the product's work grows, not moto's.

`install()` keeps, beside each bucket's key store, its key names in sorted
order (kept up to date on every put and delete), and answers LIST, V1 and
V2, from a binary search to the prefix (and to the start-after key or
continuation token), stopping one entry after the page. What it returns is
what moto returns: the same keys and common prefixes, in the same order, the
same truncation and tokens. `python tests/moto_indexed_list.py check`
compares the two on random buckets; `tests/tests/functions.rs` runs it.

Only the benchmark turns it on (`SLUICE_MOTO_INDEXED_LIST=1`, read by
tests/moto_server.py); the tests keep moto as it is."""
import bisect
import random
import sys

from moto.s3 import models, utils

Store = utils._VersionedKeyStore
INDEX = "_sluice_sorted_names"


def _names(store):
    """The store's key names in order, built on first use."""
    names = store.__dict__.get(INDEX)
    if names is None:
        names = sorted(dict.keys(store))
        store.__dict__[INDEX] = names
    return names


def _added(store, key):
    names = store.__dict__.get(INDEX)
    if names is not None:
        at = bisect.bisect_left(names, key)
        if at == len(names) or names[at] != key:
            names.insert(at, key)


def _removed(store, key):
    names = store.__dict__.get(INDEX)
    if names is not None:
        at = bisect.bisect_left(names, key)
        if at < len(names) and names[at] == key:
            del names[at]


def _wrap_add(original):
    def method(self, key, value):
        result = original(self, key, value)
        _added(self, key)
        return result

    return method


def _wrap_pop(original):
    def method(self, key, *default):
        result = original(self, key, *default)
        _removed(self, key)
        return result

    return method


def _entries(bucket, prefix, delimiter, after, limit):
    """Keys (moto's latest version of each) and common prefixes under
    `prefix`, in name order, all named after `after`, at most `limit`
    (None: all of them)."""
    names = _names(bucket.keys)
    prefix = prefix or ""
    start = bisect.bisect_left(names, prefix)
    if after is not None:
        start = max(start, bisect.bisect_right(names, after))
    out = []
    last_folder = None
    # By index: `names[start:]` would copy the rest of the bucket's names,
    # which costs as much as the walk this replaces.
    for at in range(start, len(names)):
        name = names[at]
        if not name.startswith(prefix):
            break
        if limit is not None and len(out) >= limit:
            break
        rest = name[len(prefix):]
        if delimiter and delimiter in rest:
            folder = prefix + rest.split(delimiter)[0] + delimiter
            if folder != last_folder and (after is None or folder > after):
                out.append(folder)
            last_folder = folder
            continue
        key = bucket.keys[name]
        if isinstance(key, models.FakeDeleteMarker):
            continue
        out.append(key)
    return out


def _name(entry):
    return entry.name if isinstance(entry, models.FakeKey) else entry


def list_objects(self, bucket, prefix, delimiter, marker, max_keys):
    # V1 as moto answers it: every common prefix under `prefix`, and the keys
    # after the marker, cut to the page.
    if isinstance(bucket, models.FakeTableStorageBucket):
        raise models.MethodNotAllowed()
    entries = _entries(bucket, prefix, delimiter, None, None)
    keys = [e for e in entries if not isinstance(e, str)]
    folders = [e for e in entries if isinstance(e, str)]
    if marker:
        keys = self._get_results_from_token(keys, self._pagination_tokens.get(marker) or marker)
    if max_keys is None:
        return keys, folders, False, None
    keys, truncated, next_marker = self._truncate_result(keys, max_keys)
    return keys, folders, truncated, next_marker


def list_objects_v2(self, bucket, prefix, delimiter, continuation_token, start_after, max_keys):
    if isinstance(bucket, models.FakeTableStorageBucket):
        raise models.MethodNotAllowed()
    if continuation_token:
        after = self._pagination_tokens.get(continuation_token)
    else:
        after = start_after or None
    entries = _entries(bucket, prefix, delimiter, after, max_keys + 1)
    return self._truncate_result(entries, max_keys)


def install():
    """Patch moto's S3 backend, in this process."""
    Store.__setitem__ = _wrap_add(Store.__setitem__)
    Store.setlist = _wrap_add(Store.setlist)
    Store.pop = _wrap_pop(Store.pop)
    Store.__delitem__ = _wrap_pop(Store.__delitem__)
    models.S3Backend.list_objects = list_objects
    models.S3Backend.list_objects_v2 = list_objects_v2


def compare(backend, bucket, rng, original_v1, original_v2):
    """One random listing both ways; the number of differences (0 or 1)."""
    prefix = rng.choice([None, "", "a", "a/", "b", "x/"])
    delimiter = rng.choice([None, "/"])
    after = rng.choice([None, "a", "a/", "a/b", "b-", "z"])
    max_keys = rng.choice([0, 1, 2, 3, 1000])
    got = list_objects_v2(backend, bucket, prefix, delimiter, None, after, max_keys)
    got_v1 = list_objects(backend, bucket, prefix, delimiter, after, max_keys)
    # moto's V2 calls its own V1 through the class: put moto's back for it.
    models.S3Backend.list_objects = original_v1
    try:
        want = original_v2(backend, bucket, prefix, delimiter, None, after, max_keys)
        want_v1 = original_v1(backend, bucket, prefix, delimiter, after, max_keys)
    finally:
        models.S3Backend.list_objects = list_objects
    for g, w, what in ((got, want, "V2"), (got_v1, want_v1, "V1")):
        g = [[_name(e) for e in x] if isinstance(x, list) else x for x in g]
        w = [[_name(e) for e in x] if isinstance(x, list) else x for x in w]
        if g != w:
            print(f"{what} differs: prefix={prefix!r} delimiter={delimiter!r} after={after!r} "
                  f"max_keys={max_keys}\n  indexed {g}\n  moto    {w}")
            return 1
    return 0


def check(rounds=300):
    """Compare this listing with moto's own on random buckets; exit 1 on the
    first difference."""
    original_v1 = models.S3Backend.list_objects
    original_v2 = models.S3Backend.list_objects_v2
    install()
    backend = models.s3_backends["123456789012"]["aws"]
    rng = random.Random(7)
    alphabet = ["a", "b", "a/", "b/", "-", "0", "x/y"]
    problems = 0
    for round_ in range(rounds):
        name = f"check-{round_}"
        bucket = backend.create_bucket(name, "us-east-1")
        for step in range(3):
            # Puts, deletes and overwrites between listings, so the index is
            # kept up to date and not only built.
            for _ in range(rng.randrange(0, 25)):
                key = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 5)))
                backend.put_object(name, key, b"x")
            for _ in range(rng.randrange(0, 6) if step else 0):
                names = sorted(dict.keys(bucket.keys))
                if names:
                    backend.delete_object(name, rng.choice(names))
            problems += compare(backend, bucket, rng, original_v1, original_v2)
    if problems:
        sys.exit(1)
    print(f"indexed listing = moto's listing on {rounds} random buckets")


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:
        check()
    else:
        sys.exit("usage: python tests/moto_indexed_list.py check")
