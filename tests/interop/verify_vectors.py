#!/usr/bin/env python3
"""An independent lic verifier, written from docs/format.md alone with generic
libraries (cryptography for Ed25519, cbor2 to encode the Sig_structure) and a small
CBOR decoder of its own that checks §4's encoding rules on the bytes. It runs every
vector of fixtures/manifest.json and compares its outcome with the expected error code:
evidence that the specification is complete enough to implement. Step 13 is checked in
full: the type rules, the CDDL types of the known fields, and each kind's rules (§5.3 to
§5.9). A vector's key sets are applied to the trust first, as §8.5 says; and the fixture
fingerprint is recomputed from the manifest's raw components (§5.2).

The trust files of the manifest's trust_files are read with the grammar of §8.4.
QR text (§2.4, `LIC1:` and base45) is read with a base45 decoder of its own.
The floating kinds (lease-request, lease, check-in; issue 11) follow the payload rules of
core/src/format/payload.rs until docs/format.md specifies them. Licenses and leases
signed by an on-premise floating server are verified through the pool chain they carry
(docs/format.md, "Pool chain", steps P1 to P7), and the manifest's `pool` of a vector
names the pool license (and refresh) it must verify through.

Usage: verify_vectors.py [FIXTURES_DIR]   (default: the fixtures/ beside tests/)
Requires: pip install cbor2 cryptography
"""
import base64, hashlib, json, os, re, struct, sys
import cbor2
from collections.abc import Mapping
import hmac
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.exceptions import InvalidSignature

FIX = os.path.join(sys.argv[1] if len(sys.argv) > 1 else
                   os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'fixtures'), '')

KINDS = {  # short name: (armor label, content type, signer)
 'activation-request': ('ACTIVATION REQUEST', 'application/vnd.lic.activation-request+cbor', 'device'),
 'license': ('LICENSE', 'application/vnd.lic.license+cbor', 'vendor'),
 'refresh': ('REFRESH', 'application/vnd.lic.refresh+cbor', 'vendor'),
 'deactivation': ('DEACTIVATION', 'application/vnd.lic.deactivation+cbor', 'device'),
 'usage-report': ('USAGE REPORT', 'application/vnd.lic.usage-report+cbor', 'device'),
 'receipt': ('RECEIPT', 'application/vnd.lic.receipt+cbor', 'vendor'),
 'key-set': ('KEY SET', 'application/vnd.lic.key-set+cbor', 'vendor'),
 'lease-request': ('LEASE REQUEST', 'application/vnd.lic.lease-request+cbor', 'device'),
 'lease': ('LEASE', 'application/vnd.lic.lease+cbor', 'vendor'),
 'check-in': ('CHECK-IN', 'application/vnd.lic.check-in+cbor', 'device'),
}
# The 14 encodings of the 8 small-order points (docs/format.md §3.3).
SMALL = {bytes.fromhex(h) for h in '''
0000000000000000000000000000000000000000000000000000000000000000
0000000000000000000000000000000000000000000000000000000000000080
edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
0100000000000000000000000000000000000000000000000000000000000000
0100000000000000000000000000000000000000000000000000000000000080
eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05
26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85
c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a
c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa
ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f
ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff
'''.split()}
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P

def decodes_to_a_point(key):
    """RFC 8032 §5.1.3: the 32 bytes encode a point of the curve (OpenSSL does not check
    this when it loads a key)."""
    y = int.from_bytes(key, 'little') & ((1 << 255) - 1)
    if y >= P: return False
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x2 = u * pow(v, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * pow(2, (P - 1) // 4, P) % P
        if (x * x - x2) % P != 0: return False
    return True

class Refused(Exception):
    def __init__(self, code, why=''):
        super().__init__(code); self.code = code; self.why = why

# ---- armor (§2.2) -----------------------------------------------------------------

# R3: white space trimmed from both ends of a line: ASCII white space, the other
# Unicode White_Space characters and U+FEFF (byte-order mark), as UTF-8.
ASCII_WS = b' \t\n\x0b\x0c\r'
UNICODE_WS = [c.encode() for c in
              '\u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007'
              '\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff']

def trim(line):
    while True:
        before = line
        line = line.strip(ASCII_WS)
        for ws in UNICODE_WS:
            if line.startswith(ws): line = line[len(ws):]
            if line.endswith(ws): line = line[:-len(ws)]
        if line == before: return line

# ---- QR text (§2.4) ----------------------------------------------------------------
# `LIC1:` and the binary file in base45 (RFC 9285): groups of three characters c d e
# worth c + 45·d + 45²·e, two bytes each (big-endian), and a final pair c d worth
# c + 45·d, one byte.

BASE45 = b'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:'

def qr_text(data):
    """The binary file of QR text, or None if `data` is not QR text. Damage is refused
    with armor-malformed-line (line 1)."""
    if data.startswith('\ufeff'.encode()): data = data[3:]
    data = data.lstrip(ASCII_WS)
    if not data.startswith(b'LIC1:'): return None
    body = data[5:].rstrip(b'\r\n\t')  # not spaces: a space is a base45 digit
    digits = []
    for c in body:
        d = BASE45.find(bytes([c]))
        if d < 0: raise Refused('armor-malformed-line', f'{chr(c)!r} is not a base45 character')
        digits.append(d)
    if len(digits) % 3 == 1: raise Refused('armor-malformed-line', 'one character over (cut)')
    out = bytearray()
    for i in range(0, len(digits), 3):
        g = digits[i:i + 3]
        n = sum(d * 45 ** j for j, d in enumerate(g))
        if len(g) == 3:
            if n > 65535: raise Refused('armor-malformed-line', f'group worth {n}')
            out += n.to_bytes(2, 'big')
        else:
            if n > 255: raise Refused('armor-malformed-line', f'final pair worth {n}')
            out.append(n)
    return bytes(out)

assert qr_text(b'LIC1:QED8WEX0') == b'ietf!'  # RFC 9285 §4.3
assert qr_text(b'LIC1:%69 VD92EX0') == b'Hello!!'
assert qr_text(b'LIC1:BB8') == b'AB'

def unarmor(data):
    if len(data) > 65536: raise Refused('too-large')
    if data[:1] == b'\xd2': return None, data
    # QR text names no kind, like binary input.
    raw = qr_text(data)
    if raw is not None: return None, raw
    if data[:2] in (b'\xff\xfe', b'\xfe\xff'):
        # R2a: UTF-16 with its byte-order mark, read as the same text in UTF-8.
        codec = 'utf-16-le' if data[:2] == b'\xff\xfe' else 'utf-16-be'
        data = data[2:].decode(codec, errors='replace').encode('utf-8')
    sep = b'\n' if b'\n' in data else b'\r'
    lines = [trim(l) for l in data.split(sep)]
    begins = [i for i, l in enumerate(lines) if l.startswith(b'-----BEGIN LIC ')]
    if not begins: raise Refused('armor-missing')
    if len(begins) > 1: raise Refused('armor-multiple-blocks')
    b = begins[0]
    ends = [i for i in range(b + 1, len(lines)) if lines[i].startswith(b'-----END')]
    if not ends: raise Refused('armor-truncated')
    e = ends[0]
    def marker(line, prefix):
        """(label, well formed): the label runs to the first '-----' after the prefix,
        which must end the line."""
        rest = line[len(prefix):]
        at = rest.find(b'-----')
        if at < 0: return rest, False
        return rest[:at], at + 5 == len(rest)
    bl, bok = marker(lines[b], b'-----BEGIN LIC ')
    if not bok: raise Refused('armor-malformed-line')
    if lines[e].startswith(b'-----END LIC '):
        el, eok = marker(lines[e], b'-----END LIC ')
        if not eok: raise Refused('armor-malformed-line')
    else:
        el = None
    if bl != el: raise Refused('armor-label-mismatch')
    kind = next((k for k, v in KINDS.items() if v[0].encode() == bl), None)
    if kind is None:
        if any(v[0].encode().lower() == bl.lower() for v in KINDS.values()):
            raise Refused('armor-label-case')
        raise Refused('armor-unknown-kind')
    alphabet = set(b'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=')
    body = b''
    for l in lines[b + 1:e]:
        if any(c not in alphabet for c in l): raise Refused('armor-bad-base64')
        body += l
    try:
        raw = base64.b64decode(body, validate=True)
    except Exception: raise Refused('armor-bad-base64')
    if base64.b64encode(raw) != body: raise Refused('armor-bad-base64')  # canonical
    return kind, raw

# ---- deterministic CBOR (§4) ------------------------------------------------------
# A small decoder of its own rather than cbor2's: cbor2 turns some tags (0, 1, bignums,
# ...) into Python objects and may re-encode them differently, and sorts map keys
# length-first, so a decode/re-encode round trip misjudges fields it does not know.

class Tag:
    def __init__(self, tag, value): self.tag, self.value = tag, value
    def __repr__(self): return f'Tag({self.tag}, {self.value!r})'

UNDEFINED = object()

class CMap(dict):
    """A CBOR map: a dict for lookups, plus its entries in order."""
    def __init__(self):
        super().__init__(); self.pairs = []; self.dup = False

def hashable(k, raw):
    try: hash(k); return k
    except TypeError: return ('unhashable', raw)

def shortest_float(value, width):
    """Whether a float of `width` bytes could be written shorter without loss."""
    if value != value: return width == 2  # NaN: only f9 7e00 (checked by the caller)
    for w, fmt in ((2, '>e'), (4, '>f')):
        if w >= width: return True
        try:
            if struct.unpack(fmt, struct.pack(fmt, value))[0] == value: return False
        except (OverflowError, struct.error): pass
    return True

def decode(buf, off, depth, st):
    """Decode one item at `off` (depth: nesting so far). Returns (value, end). Raises
    cbor-too-deep / cbor-malformed; records encoding-rule breaks in st['nd'] (reported
    after trailing bytes, as lic does)."""
    def nd(why): st.setdefault('nd', why)
    if off >= len(buf): raise Refused('cbor-malformed', 'truncated')
    start = off
    ib = buf[off]; mt, ai = ib >> 5, ib & 31; off += 1
    if ai < 24: arg = ai
    elif ai <= 27:
        n = 1 << (ai - 24)
        if off + n > len(buf): raise Refused('cbor-malformed', 'truncated')
        arg = int.from_bytes(buf[off:off + n], 'big'); off += n
        if mt != 7 and arg < (24, 256, 65536, 2**32)[ai - 24]: nd('non-shortest head')
    elif ai == 31:
        if mt in (2, 3, 4, 5): arg = None; nd('indefinite length')
        else: raise Refused('cbor-malformed', 'break')
    else: raise Refused('cbor-malformed', 'reserved')
    if mt in (4, 5, 6) and depth + 1 > 16: raise Refused('cbor-too-deep')
    if mt == 0: return arg, off
    if mt == 1: return -1 - arg, off
    if mt in (2, 3):
        if arg is None:
            chunks = []
            while True:
                if off >= len(buf): raise Refused('cbor-malformed', 'truncated')
                if buf[off] == 0xff: off += 1; break
                if buf[off] >> 5 != mt or buf[off] & 31 == 31: raise Refused('cbor-malformed', 'chunk')
                chunk, off = decode(buf, off, depth, st); chunks.append(chunk)
            return (b'' if mt == 2 else '').join(chunks), off
        if off + arg > len(buf): raise Refused('cbor-malformed', 'truncated')
        data = buf[off:off + arg]
        if mt == 3:
            try: data = data.decode('utf-8')
            except UnicodeDecodeError: raise Refused('cbor-malformed', 'utf8')
        return data, off + arg
    if mt == 4:
        items = []
        while arg is None or len(items) < arg:
            if arg is None:
                if off >= len(buf): raise Refused('cbor-malformed', 'truncated')
                if buf[off] == 0xff: off += 1; break
            item, off = decode(buf, off, depth + 1, st); items.append(item)
        return items, off
    if mt == 5:
        m = CMap(); prev = None
        while arg is None or len(m.pairs) < arg:
            if arg is None:
                if off >= len(buf): raise Refused('cbor-malformed', 'truncated')
                if buf[off] == 0xff: off += 1; break
            kstart = off
            k, off = decode(buf, off, depth + 1, st)
            raw = buf[kstart:off]
            v, off = decode(buf, off, depth + 1, st)
            if prev is not None and raw == prev: nd('duplicate key'); m.dup = True
            elif prev is not None and raw < prev: nd('key order')
            prev = raw
            hk = hashable(k, raw)
            if hk in m: m.dup = True
            m.pairs.append((k, v)); m[hk] = v
        return m, off
    if mt == 6:
        value, end = decode(buf, off, depth + 1, st)
        if arg in (2, 3) and isinstance(value, bytes):
            # A bignum (§4.1): more than 8 bytes, no leading zero byte. lic's decoder
            # reads one of at most 16 bytes as an integer, and cannot hold a negative
            # one below -2^127 (cbor-malformed).
            n = int.from_bytes(value, 'big')
            if len(value) <= 8 or value[0] == 0: nd('bignum form')
            if len(value) <= 16:
                if arg == 3 and n >= 2**127: raise Refused('cbor-malformed', 'integer too large')
                if n < 2**64: return (n if arg == 2 else -1 - n), end
        return Tag(arg, value), end
    # mt 7: simple values (§4.1). false, true, null; undefined is not deterministic, and
    # so are the two-byte forms f8 14..f8 17 of these four; every other simple value,
    # unassigned or not well-formed, is cbor-malformed.
    if ai == 24:
        if 20 <= arg <= 23: nd('two-byte simple value')
        else: raise Refused('cbor-malformed', 'simple')
        return (False, True, None, UNDEFINED)[arg - 20], off
    if ai < 20: raise Refused('cbor-malformed', 'simple')
    if ai in (20, 21, 22): return (False, True, None)[ai - 20], off
    if ai == 23: nd('undefined'); return UNDEFINED, off
    width = 1 << (ai - 24)
    value = struct.unpack({2: '>e', 4: '>f', 8: '>d'}[width], buf[start + 1:off])[0]
    if value != value and buf[start:off] != b'\xf9\x7e\x00': nd('non-canonical NaN')
    elif not shortest_float(value, width): nd('non-shortest float')
    return value, off

def strict(buf):
    st = {}
    v, end = decode(buf, 0, 0, st)
    if end != len(buf): raise Refused('cbor-trailing-bytes')
    if 'nd' in st: raise Refused('cbor-not-deterministic', st['nd'])
    return v

def lenient_version(buf):
    """Step 10: `v` from the first item, ignoring trailing bytes and encoding rules."""
    try: p, _ = decode(buf, 0, 0, {})
    except Refused: return None
    if not isinstance(p, CMap): return None
    vs = [v for k, v in p.pairs if k == 'v']
    if len(vs) != 1: return None
    v = vs[0]
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**64: return None
    return v

def is_int(x): return isinstance(x, int) and not isinstance(x, bool)

def int64(x): return is_int(x) and -2**63 <= x < 2**63

def registered_or_private(v, registered):
    """An algorithm or a label in crit: text, or a 64-bit integer that is registered
    (§3.2's lists) or private-use (below -65536)."""
    return isinstance(v, str) or (int64(v) and (v in registered or v < -65536))

def header_wellformed(h):
    """§3.2: a well-formed COSE header map, with the IANA lists of §3.2."""
    if not isinstance(h, Mapping) or h.dup: raise Refused('cose-malformed')
    for k, v in h.pairs:
        if not (isinstance(k, str) or int64(k)): raise Refused('cose-malformed')
        if k == 1 and not registered_or_private(v, REGISTERED_ALGS): raise Refused('cose-malformed')
        if k == 2 and (not isinstance(v, list) or not v
                       or not all(registered_or_private(l, REGISTERED_HEADER_PARAMETERS) for l in v)):
            raise Refused('cose-malformed')
        if k == 3:
            if isinstance(v, str):
                if not v or v.strip(WHITE_SPACE_CHARS) != v or v.count('/') != 1: raise Refused('cose-malformed')
            elif not (is_int(v) and v in REGISTERED_CONTENT_FORMATS): raise Refused('cose-malformed')
        if k in (4, 5, 6) and (not isinstance(v, bytes) or not v): raise Refused('cose-malformed')
        if k == 7: counter_signatures_wellformed(v)
        if 5 in h and 6 in h: raise Refused('cose-malformed')

def counter_signatures_wellformed(v):
    """Label 7: a COSE_Signature, or a non-empty array of them."""
    if not isinstance(v, list) or not v: raise Refused('cose-malformed')
    for sig in ([v] if isinstance(v[0], bytes) else v):
        if not (isinstance(sig, list) and len(sig) == 3 and isinstance(sig[0], bytes)
                and isinstance(sig[2], bytes)): raise Refused('cose-malformed')
        if sig[0]:
            hdr, end = decode(sig[0], 0, -1000, {})
            if end != len(sig[0]): raise Refused('cose-malformed')
            header_wellformed(hdr)
        header_wellformed(sig[1])

# The IANA registries as §3.2 lists them (snapshot of 2025-09-13).
REGISTERED_ALGS = {
    -65535, -65534, -65533, -65532, -65531, -65530, -65529, -268, -267, -266, -265, -260,
    -259, -258, -257, *range(-53, -24), *range(-19, -2), 0, 1, 2, 3, 4, 5, 6, 7, 10, 11,
    12, 13, 14, 15, 24, 25, 26, 30, 31, 32, 33, 34}
REGISTERED_HEADER_PARAMETERS = {*range(0, 8), *range(9, 17), 32, 33, 34, 35, 256, 257}
REGISTERED_CONTENT_FORMATS = {
    0, 16, 17, 18, 19, 21, 22, 23, 40, 41, 42, 47, 50, 51, 52, 60, 61, 62, 63, 64, 65, 96,
    97, 98, 101, 102, 110, 111, 112, 113, 114, 115, 140, 256, 257, 258, 259, 260, 261, 262,
    263, 264, 265, 266, 267, 268, 271, 272, 280, 281, 282, 283, 284, 285, 286, 287, 290,
    291, 310, 311, 320, 322, 340, 341, 432, 433, 601, 10000, 10001, 10002, 10003, 10004,
    11050, 11060, 11542, 11543, 11544, 20000, 30000}
# Unicode White_Space (§3.2's content type, §5.1's non-blank text).
WHITE_SPACE_CHARS = ('\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000'
                     + ''.join(chr(c) for c in range(0x2000, 0x200b)))
LIC_CONTENT_TYPE = re.compile(r'application/vnd\.lic\.[a-z0-9-]+\+cbor')

# ---- payloads (§5) ----------------------------------------------------------------
# The fields each version-1 payload knows; None: checked through entirely; a dict: an
# extensible structure (unknown fields ignored, whatever they hold); ('names', shape):
# a name-indexed map of values of that shape; ('list', shape): an array of them.
JOURNAL = {'seq': None, 'prev': None, 'trail': None}
POOL_CHAIN = {'license': None, 'refresh': None}  # extensible (the pool chain)
FEATURES = ('names', {'limit': None, 'overage': None, 'max_overage': None, 'floating': None})
SHAPES = {
 'activation-request': {'v': None, 'product': None, 'credential': None, 'fingerprint': None,
                        'nonce': None, 'created': None, 'client': None, 'journal': JOURNAL,
                        'variables': None, 'pool_seats': None},
 'license': {'v': None, 'license_id': None, 'activation_id': None, 'product': None,
             'device_key': None, 'fingerprint': None,
             'match_rule': {'required': None, 'max_changed': None}, 'features': FEATURES,
             'license_type': None, 'issued': None, 'not_before': None, 'expires': None,
             'offline_expiry': None, 'clock_tolerance': None, 'serial': None,
             'request_nonce': None, 'counters': None, 'pool_seats': None, 'pool': POOL_CHAIN},
 'refresh': {'v': None, 'license_id': None, 'activation_id': None, 'product': None,
             'device_key': None, 'serial': None, 'features': FEATURES, 'license_type': None,
             'expires': None, 'offline_expiry': None, 'clock_tolerance': None,
             'clock_floor': None, 'reason': None, 'issued': None, 'pool_seats': None},
 'deactivation': {'v': None, 'activation_id': None, 'product': None, 'counters': None,
                  'journal': JOURNAL, 'created': None, 'variables': None},
 'usage-report': {'v': None, 'activation_id': None, 'product': None, 'counters': None,
                  'journal': JOURNAL, 'created': None, 'variables': None},
 'receipt': {'v': None, 'activation_id': None, 'file_hash': None, 'file_kind': None,
             'state': None, 'applied': None},
 'key-set': {'v': None, 'version': None, 'keys': None,
             'revoked': ('list', {'key': None, 'reason': None, 'revoked': None}),
             'issued': None},
 'lease-request': {'v': None, 'product': None, 'credential': None, 'fingerprint': None,
                   'action': None, 'instance': None, 'feature': None, 'hours': None,
                   'journal': JOURNAL, 'nonce': None, 'created': None, 'client': None,
                   'variables': None},
 'lease': {'v': None, 'license_id': None, 'activation_id': None, 'product': None,
           'device_key': None, 'fingerprint': None,
           'match_rule': {'required': None, 'max_changed': None}, 'instance': None,
           'feature': None, 'features': FEATURES, 'license_type': None, 'issued': None,
           'renew_after': None, 'expires': None, 'license_expires': None,
           'offline_expiry': None, 'clock_tolerance': None, 'request_nonce': None,
           'pool': POOL_CHAIN},
 'check-in': {'v': None, 'activation_id': None, 'product': None, 'counters': None,
              'journal': JOURNAL, 'created': None, 'variables': None},
}

def plain(x):
    if x is None or x is UNDEFINED or isinstance(x, (float, Tag)):
        raise Refused('payload-invalid', 'tag, null or float in a known field')
    if isinstance(x, CMap):
        for k, val in x.pairs: plain(k); plain(val)
    if isinstance(x, list):
        for item in x: plain(item)

def known(x, shape):
    """§5.1's type rules on the fields this version knows (§5.10)."""
    if isinstance(shape, dict) and isinstance(x, CMap):
        for k, val in x.pairs:
            if not isinstance(k, str): raise Refused('payload-invalid', 'non-text key')
            if k in shape: known(val, shape[k])
    elif isinstance(shape, tuple) and shape[0] == 'names' and isinstance(x, CMap):
        for k, val in x.pairs: plain(k); known(val, shape[1])
    elif isinstance(shape, tuple) and shape[0] == 'list' and isinstance(x, list):
        for item in x: known(item, shape[1])
    else: plain(x)

# -- the CDDL types of §5.1 (each check raises payload-invalid) --

def invalid(why): raise Refused('payload-invalid', why)

def u64(x):
    if not (is_int(x) and 0 <= x < 2**64): invalid('not a u64')
def u32(x):
    if not (is_int(x) and 0 <= x < 2**32): invalid('not a u32')
def timestamp(x):
    if not (is_int(x) and -8334601228800 <= x <= 8210266876799): invalid('not a timestamp')
def tstr(x):
    if not isinstance(x, str): invalid('not a text string')
def boolean(x):
    if not isinstance(x, bool): invalid('not a bool')
def bstr(n):
    def check(x):
        if not (isinstance(x, bytes) and len(x) == n): invalid(f'not {n} bytes')
    return check
bytes32, nonce = bstr(32), bstr(16)
def array(item):
    def check(x):
        if not isinstance(x, list): invalid('not an array')
        for i in x: item(i)
    return check
def names(value):
    def check(x):
        if not isinstance(x, CMap): invalid('not a map')
        for k, v in x.pairs: tstr(k); value(v)
    return check
def record(fields, optional=()):
    """A map with text keys: `fields` (name: type) required unless named in `optional`;
    unknown keys ignored."""
    def check(x):
        if not isinstance(x, CMap): invalid('not a map')
        for name, typ in fields.items():
            if name in x: typ(x[name])
            elif name not in optional: invalid(f'missing field `{name}`')
    return check
def one_of(*values):
    def check(x):
        if not (isinstance(x, str) and x in values): invalid('not one of the values')
    return check
def credential(x):
    if not (isinstance(x, CMap) and len(x.pairs) == 1): invalid('credential: not one entry')
    k, v = x.pairs[0]
    if k not in ('license-key', 'user'): invalid('credential: unknown entry')
    tstr(v)

fingerprint = names(bytes32)
counters = names(u64)
variables = names(tstr)
features = names(record({'limit': u64, 'overage': boolean, 'max_overage': u64, 'floating': u64},
                        optional=('limit', 'overage', 'max_overage', 'floating')))
match_rule = record({'required': array(tstr), 'max_changed': u32})
journal_head = record({'seq': u64, 'prev': bytes32, 'trail': array(bytes32)}, optional=('trail',))
license_type = one_of('perpetual', 'time-limited', 'subscription', 'trial', 'floating')
revoked_key = record({'key': bytes32, 'reason': tstr, 'revoked': timestamp})
def any_bytes(x):
    if not isinstance(x, bytes): invalid('not a byte string')
pool_chain = record({'license': any_bytes, 'refresh': any_bytes}, optional=('refresh',))

TYPES = {
 'activation-request': record({'product': tstr, 'credential': credential,
    'fingerprint': fingerprint, 'nonce': nonce, 'created': timestamp, 'client': tstr,
    'journal': journal_head, 'variables': variables, 'pool_seats': u32},
    optional=('variables', 'pool_seats')),
 'license': record({'license_id': tstr, 'activation_id': tstr, 'product': tstr,
    'device_key': bytes32, 'fingerprint': fingerprint, 'match_rule': match_rule,
    'features': features, 'license_type': license_type, 'issued': timestamp,
    'not_before': timestamp, 'expires': timestamp, 'offline_expiry': timestamp,
    'clock_tolerance': u64, 'serial': u64, 'request_nonce': nonce, 'counters': counters,
    'pool_seats': u32, 'pool': pool_chain},
    optional=('expires', 'offline_expiry', 'counters', 'pool_seats', 'pool')),
 'refresh': record({'license_id': tstr, 'activation_id': tstr, 'product': tstr,
    'device_key': bytes32, 'serial': u64, 'features': features,
    'license_type': license_type, 'expires': timestamp, 'offline_expiry': timestamp,
    'clock_tolerance': u64, 'clock_floor': timestamp, 'reason': tstr, 'issued': timestamp,
    'pool_seats': u32},
    optional=('expires', 'offline_expiry', 'clock_floor', 'pool_seats')),
 'deactivation': record({'activation_id': tstr, 'product': tstr, 'counters': counters,
    'journal': journal_head, 'created': timestamp, 'variables': variables},
    optional=('variables',)),
 'usage-report': record({'activation_id': tstr, 'product': tstr, 'counters': counters,
    'journal': journal_head, 'created': timestamp, 'variables': variables},
    optional=('variables',)),
 'receipt': record({'activation_id': tstr, 'file_hash': bytes32, 'file_kind': tstr,
    'state': tstr, 'applied': timestamp}),
 'key-set': record({'version': u64, 'keys': array(bytes32), 'revoked': array(revoked_key),
    'issued': timestamp}, optional=('revoked',)),
 'lease-request': record({'product': tstr, 'credential': credential,
    'fingerprint': fingerprint, 'action': one_of('take', 'renew', 'release', 'checkout'),
    'instance': nonce, 'feature': tstr, 'hours': u64, 'journal': journal_head, 'nonce': nonce,
    'created': timestamp, 'client': tstr, 'variables': variables},
    optional=('feature', 'hours', 'journal', 'variables')),
 'lease': record({'license_id': tstr, 'activation_id': tstr, 'product': tstr,
    'device_key': bytes32, 'fingerprint': fingerprint, 'match_rule': match_rule,
    'instance': nonce, 'feature': tstr, 'features': features, 'license_type': license_type,
    'issued': timestamp, 'renew_after': timestamp, 'expires': timestamp,
    'license_expires': timestamp, 'offline_expiry': timestamp, 'clock_tolerance': u64,
    'request_nonce': nonce, 'pool': pool_chain},
    optional=('feature', 'license_expires', 'offline_expiry', 'pool')),
 'check-in': record({'activation_id': tstr, 'product': tstr, 'counters': counters,
    'journal': journal_head, 'created': timestamp, 'variables': variables},
    optional=('variables',)),
}

# -- the rules of each kind (§5.3 to §5.9) --

MAX_COUNTER = 2**53 - 1      # §5.2
MAX_TRAIL = 32               # §5.2
MAX_KEY_SET_KEYS = 256       # §5.9
MAX_NAME_LEN = 64            # §5.2, variables
MAX_VARIABLES = 64
MAX_VARIABLE_VALUE = 1024    # bytes of UTF-8
MAX_VARIABLES_SIZE = 16384   # names and values together, bytes of UTF-8
MAX_CHECKOUT_HOURS = 10 * 366 * 24  # the most hours a checkout asks for
NAME_CHARS = set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.')
# Unicode White_Space (§5.1, non-blank text).
WHITE_SPACE = set(WHITE_SPACE_CHARS)

def non_blank(*texts):
    for t in texts:
        if all(c in WHITE_SPACE for c in t): invalid('blank text')

def valid_counters(c):
    for name, n in c.items():
        non_blank(name)
        if n > MAX_COUNTER: invalid('counter beyond MAX_COUNTER')

def valid_features(f):
    for name, feature in f.items():
        non_blank(name)
        if 'limit' in feature and feature['limit'] > MAX_COUNTER: invalid('limit beyond MAX_COUNTER')

def valid_variables(v):
    """§5.2: how many, then each name and value in name order, then the size together."""
    if len(v) > MAX_VARIABLES: invalid('too many variables')
    size = 0
    for name, value in v.items():
        if not (0 < len(name.encode()) <= MAX_NAME_LEN and set(name) <= NAME_CHARS):
            invalid('variable name')
        if len(value.encode()) > MAX_VARIABLE_VALUE: invalid('variable value too long')
        size += len(name.encode()) + len(value.encode())
    if size > MAX_VARIABLES_SIZE: invalid('variables too large')

def usable_name(name):
    return 0 < len(name.encode()) <= MAX_NAME_LEN and set(name) <= NAME_CHARS

def valid_journal(j):
    if len(j.get('trail', [])) > MAX_TRAIL: invalid('trail too long')

def usable_key(key):
    """§8.1: canonical, a point of the curve, not of small order."""
    return key not in SMALL and decodes_to_a_point(key)

def rules(kind, p):
    if kind == 'activation-request':
        non_blank(p['product'], p['credential'].pairs[0][1])
        if not p['fingerprint']: invalid('no fingerprint components')
        if p.get('pool_seats') == 0: invalid('a pool of 0 seats')
        valid_journal(p['journal'])
        valid_variables(p.get('variables', {}))
    elif kind == 'license':
        non_blank(p['license_id'], p['activation_id'], p['product'])
        if p['serial'] < 1: invalid('serial')
        if any(c not in p['fingerprint'] for c in p['match_rule']['required']): invalid('required component')
        if 'expires' in p and p['expires'] < p['not_before']: invalid('expires before not_before')
        if p.get('pool_seats') == 0: invalid('a pool license of 0 seats')
        if 'pool_seats' in p and 'pool' in p: invalid('a pool license carries no pool')
        valid_counters(p.get('counters', {}))
        valid_features(p['features'])
    elif kind == 'refresh':
        non_blank(p['license_id'], p['activation_id'], p['product'], p['reason'])
        if p['serial'] < 2: invalid('serial')
        if p.get('pool_seats') == 0: invalid('a pool of 0 seats')
        valid_features(p['features'])
    elif kind == 'lease-request':
        non_blank(p['product'], p['credential'].pairs[0][1])
        if not p['fingerprint']: invalid('no fingerprint components')
        if 'feature' in p and not usable_name(p['feature']): invalid('feature name')
        if p['action'] == 'checkout':
            if 'hours' not in p or 'journal' not in p: invalid('a checkout carries hours and journal')
            if not 1 <= p['hours'] <= MAX_CHECKOUT_HOURS: invalid('checkout hours')
            valid_journal(p['journal'])
            if 'feature' in p: invalid('a checkout carries no feature')
        elif 'hours' in p or 'journal' in p: invalid('hours and journal belong to a checkout')
        valid_variables(p.get('variables', {}))
    elif kind == 'lease':
        non_blank(p['license_id'], p['activation_id'], p['product'])
        if 'feature' in p and not usable_name(p['feature']): invalid('feature name')
        if p['expires'] <= p['issued']: invalid('expires not after issued')
        if not p['issued'] <= p['renew_after'] <= p['expires']: invalid('renew_after outside the lease')
        if any(c not in p['fingerprint'] for c in p['match_rule']['required']): invalid('required component')
        valid_features(p['features'])
    elif kind in ('deactivation', 'usage-report', 'check-in'):
        non_blank(p['activation_id'], p['product'])
        valid_counters(p['counters'])
        valid_journal(p['journal'])
        valid_variables(p.get('variables', {}))
    elif kind == 'receipt':
        non_blank(p['activation_id'], p['file_kind'], p['state'])
    elif kind == 'key-set':
        revoked = p.get('revoked', [])
        if p['version'] == 0: invalid('version 0')
        if not p['keys']: invalid('no keys')
        named = list(p['keys']) + [r['key'] for r in revoked]
        if len(named) > MAX_KEY_SET_KEYS: invalid('too many keys')
        if not all(usable_key(k) for k in named): invalid('unusable key')
        if len(set(named)) != len(named): invalid('a key named twice')
        for r in revoked: non_blank(r['reason'])

# ---- verification (§6) ------------------------------------------------------------

def kid_of(key): return hashlib.sha256(key).digest()[:8]

class Trust:
    """The keys in force (§8.5): trusted keys by kid, revoked kids with their reason."""
    def __init__(self, anchors):
        self.anchors = dict(anchors); self.keys = dict(anchors); self.revoked = {}
        self.version = 0; self.last = None

def verify(data, expected, trust, signer=None):
    """The steps of §6. `signer`: None, the keys in force find a vendor-signed file's
    key; UNVERIFIED, steps 8 and 9 are skipped (the payload read without verifying it,
    only to find its pool chain, P1); or a floating server's key (bytes), the only key
    a vendor-signed file may then be signed by (P5)."""
    akind, raw = unarmor(data)
    if expected and akind and akind != expected: raise Refused('wrong-kind')
    exp = expected or akind
    # 1
    if len(raw) > 65536: raise Refused('too-large')
    # 2
    top = strict(raw)
    # 3
    if not isinstance(top, Tag) or top.tag != 18: raise Refused('cose-malformed')
    a = top.value
    if not isinstance(a, list) or len(a) != 4: raise Refused('cose-malformed')
    prot, unprot, payload, sig = a
    if not isinstance(prot, bytes) or not isinstance(unprot, Mapping) or not (payload is None or isinstance(payload, bytes)) or not isinstance(sig, bytes):
        raise Refused('cose-malformed')
    if prot:
        # The COSE decoder: well-formed, no trailing bytes, no duplicate labels.
        try:
            hdr, end = decode(prot, 0, -1000, {})
        except Refused: raise Refused('cose-malformed')
        if end != len(prot): raise Refused('cose-malformed')
        header_wellformed(hdr)
    else: hdr = CMap()
    header_wellformed(unprot)
    # 4
    if not prot: raise Refused('header-invalid')
    strict(prot)
    # 5
    if payload is None: raise Refused('cose-malformed')
    if unprot: raise Refused('unprotected-header')
    # 6
    if 1 not in hdr: raise Refused('header-invalid')
    if hdr[1] != -8: raise Refused('unsupported-algorithm')
    if 2 in hdr: raise Refused('unsupported-critical')
    # 7
    ct = hdr.get(3)
    if not isinstance(ct, str): raise Refused('header-invalid')
    kind = next((k for k, v in KINDS.items() if v[1] == ct), None)
    if kind is None and LIC_CONTENT_TYPE.fullmatch(ct): raise Refused('unsupported-kind')
    if kind is None or (exp and kind != exp): raise Refused('wrong-content-type')
    # 8
    kid = hdr.get(4, b'')
    if len(kid) != 8: raise Refused('header-invalid')
    if signer is UNVERIFIED: key = None
    elif KINDS[kind][2] == 'vendor' and signer is not None:
        if kid == kid_of(signer): key = signer
        else: raise Refused('unknown-key')
    elif KINDS[kind][2] == 'vendor':
        if kid in trust.keys: key = trust.keys[kid]
        elif kid in trust.revoked: raise Refused('key-revoked', trust.revoked[kid])
        else: raise Refused('unknown-key')
    else:
        key = hdr.get(-65537)
        if not isinstance(key, bytes) or len(key) != 32: raise Refused('header-invalid')
        if key in SMALL: raise Refused('weak-key')
        if not decodes_to_a_point(key): raise Refused('weak-key')
        try: Ed25519PublicKey.from_public_bytes(key)
        except Exception: raise Refused('weak-key')
        if kid_of(key) != kid: raise Refused('header-invalid')
    # 9
    tbs = cbor2.dumps(['Signature1', prot, b'', payload])
    if key is None: pass  # UNVERIFIED
    elif len(sig) != 64 or sig[:32] in SMALL or int.from_bytes(sig[32:], 'little') >= L:
        raise Refused('bad-signature')
    else:
        try: Ed25519PublicKey.from_public_bytes(key).verify(sig, tbs)
        except InvalidSignature: raise Refused('bad-signature')
    # 10
    version = lenient_version(payload)
    if version is not None and version != 1: raise Refused('unsupported-version')
    # 11
    p = strict(payload)
    # 12
    if not isinstance(p, CMap): raise Refused('payload-invalid')
    v = p.get('v')
    if isinstance(v, bool) or not isinstance(v, int) or v < 0: raise Refused('payload-invalid')
    if v != 1: raise Refused('unsupported-version')
    # 13: type rules of known fields, CDDL types, then the kind's rules
    known(p, SHAPES[kind])
    TYPES[kind](p)
    rules(kind, p)
    return kind, key, p, hashlib.sha256(raw).hexdigest()

def apply_key_set(trust, data):
    """§8.5: accept a key set where `trust` is in force, and apply it. Raises Refused."""
    kind, _, p, _ = verify(data, 'key-set', trust)
    raw = unarmor(data)[1]
    if p['version'] <= trust.version:
        if p['version'] == trust.version and raw == trust.last: return  # already installed
        raise Refused('rollback' if p['version'] < trust.version else 'serial-conflict')
    for k in p['keys']:
        if kid_of(k) in trust.revoked: raise Refused('key-revoked', 'trusts a revoked key')
    for r in p.get('revoked', []):
        trust.revoked.setdefault(kid_of(r['key']), r['reason'])
    keys = {}
    for k in list(trust.anchors.values()) + list(p['keys']):
        if kid_of(k) not in trust.revoked: keys[kid_of(k)] = k
    trust.keys, trust.version, trust.last = keys, p['version'], raw

# ---- the pool chain (docs/format.md, "Pool chain": P1 to P9) ----------------------
# vendor key -> pool license (vendor-signed, with pool_seats, naming the floating
# server's device key) -> lease or checkout license signed by that key.

UNVERIFIED = object()

def verify_pool(chain, trust):
    """P3, P4: the pool a chain grants, verified with the vendor's keys."""
    try: _, _, l, _ = verify(chain['license'], 'license', trust)
    except Refused as r: raise Refused('pool-untrusted', f'the pool license: {r.code}')
    if 'pool_seats' not in l: raise Refused('pool-untrusted', 'not a pool license')
    if not usable_key(l['device_key']): raise Refused('pool-untrusted', 'the server key is unusable')
    pool = {'license_id': l['license_id'], 'activation_id': l['activation_id'],
            'product': l['product'], 'server_key': l['device_key'], 'seats': l['pool_seats'],
            'expires': l.get('expires'), 'serial': l['serial']}
    if 'refresh' in chain:
        try: _, _, r, _ = verify(chain['refresh'], 'refresh', trust)
        except Refused as e: raise Refused('pool-untrusted', f'the pool refresh: {e.code}')
        if r['activation_id'] != l['activation_id'] or r['license_id'] != l['license_id']:
            raise Refused('pool-untrusted', 'a refresh of another activation')
        if r['device_key'] != l['device_key'] or r['product'] != l['product']:
            raise Refused('pool-untrusted', 'a refresh of another device or product')
        if r['serial'] > l['serial']:
            pool.update(serial=r['serial'], expires=r.get('expires'),
                        seats=r.get('pool_seats', pool['seats']))
    return pool

def verify_chained(data, expected, trust):
    """Verify a file as a client does: signed by a vendor key, or (a license or lease)
    by a floating server whose pool chain it carries. Returns verify's four values and
    the pool (None: signed by a vendor key)."""
    try: return verify(data, expected, trust) + (None,)
    except Refused as r:
        if r.code != 'unknown-key': raise
        unknown = r
    # P1: the payload read without verifying it: only to find its pool chain.
    try: kind, _, p, _ = verify(data, expected, trust, UNVERIFIED)
    except Refused: raise unknown
    # P2: only a license or a lease carrying a chain can be signed by a floating server.
    if kind not in ('license', 'lease') or 'pool' not in p: raise unknown
    pool = verify_pool(p['pool'], trust)  # P3, P4
    # P5: the file is signed by the key the pool license names.
    try: kind, key, p, h = verify(data, expected, trust, pool['server_key'])
    except Refused as r:
        if r.code in ('unknown-key', 'bad-signature'): raise Refused('pool-untrusted', 'wrong signer')
        raise
    # P6, P7: the pool's product and license.
    if p['product'] != pool['product']: raise Refused('pool-other-product')
    if p['license_id'] != pool['license_id']: raise Refused('pool-untrusted', 'another license')
    return kind, key, p, h, pool

# ---- the fingerprint (§5.2) --------------------------------------------------------

def fingerprint_key(seed):
    return hashlib.sha256(b'lic derive v1\0fingerprint\0' + seed).digest()

def component_hash(key, product, name, value):
    msg = b'\0'.join([b'lic fingerprint v2', product.encode(), name.encode(), value.encode()])
    return hmac.new(key, msg, hashlib.sha256).digest()

# The worked values of §5.2.
assert component_hash(bytes([7] * 32), 'photo-pro', 'machine-id', 'abc').hex() == \
    '44cd281507669d3b5896742f9528fea8abbf3a26bafd94af36657f9d1bba5fd7'
assert component_hash(fingerprint_key(bytes([3] * 32)), 'photo-pro', 'machine-id', 'abc').hex() == \
    '6dc58a357cee4b94436b9c7d14d91728493339ecfadc94efab064e4d94718003'

# ---- trust files (§8.2, §8.4) ------------------------------------------------------
# Read with the grammar of §8.4, not with a PEM library: OpenSSL's reader (behind
# cryptography's load_pem_public_key) also takes indented, split or re-wrapped base64.

BEGIN, END = '-----BEGIN PUBLIC KEY-----', '-----END PUBLIC KEY-----'
SPKI_PREFIX = bytes.fromhex('302a300506032b6570032100')
BLOCK_BODY = re.compile(r'(?:\r\n|\n|\r)((?:[A-Za-z0-9+/=]+(?:\r\n|\n|\r))+)')

def read_trust_file(data):
    """The keys of a trust file, by kid; ValueError if it is refused (as a whole)."""
    if len(data) > 65536: raise ValueError('larger than 64 KiB')
    text = data.decode('utf-8')  # UnicodeDecodeError is a ValueError
    keys, at = {}, 0
    while (start := text.find(BEGIN, at)) >= 0:
        stop = text.find(END, start + len(BEGIN))
        if stop < 0: raise ValueError('a block without its END marker')
        body = BLOCK_BODY.fullmatch(text[start + len(BEGIN):stop])
        if not body: raise ValueError('not laid out as PEM')
        lines = re.split(r'\r\n|\n|\r', body.group(1))[:-1]
        if any(len(l) != 64 for l in lines[:-1]) or len(lines[-1]) > 64:
            raise ValueError('base64 lines are 64 characters, except the last')
        b64 = ''.join(lines)
        der = base64.b64decode(b64, validate=True)
        if base64.b64encode(der).decode() != b64: raise ValueError('non-canonical base64')
        if len(der) != 44 or not der.startswith(SPKI_PREFIX): raise ValueError('not an Ed25519 SPKI')
        key = der[12:]
        if not usable_key(key): raise ValueError('not a usable Ed25519 public key')
        keys[kid_of(key)] = key
        at = stop + len(END)
    if not keys: raise ValueError('no PUBLIC KEY block')
    return keys

# ---- the vectors (§10) -------------------------------------------------------------

def raw_public(pem):
    return serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)

man = json.load(open(FIX + 'manifest.json'))
anchors = read_trust_file(open(FIX + man['trust'], 'rb').read())
def raw_seed(path):
    return serialization.load_pem_private_key(open(FIX + path, 'rb').read(), password=None).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())

devpub = raw_public(open(FIX + man['keys']['device_public'], 'rb').read())
serverpub = raw_public(open(FIX + man['keys']['pool_server_public'], 'rb').read())
fp = man['fingerprint']
# The fixture fingerprint, keyed by the device key; the floating server's (its pool
# request, license and refresh) is the same components keyed by the server's key.
expected_fingerprint = {
    pub: {name: component_hash(fingerprint_key(raw_seed(man['keys'][private])), fp['product'], name, value)
          for name, value in fp['components'].items()}
    for pub, private in ((devpub, 'device_private'), (serverpub, 'pool_server_private'))}

def binary(path):
    return unarmor(open(FIX + path, 'rb').read())[1]
failed = passed = 0
for v in man['vectors']:
    data = open(FIX + v['file'], 'rb').read()
    trust = Trust(anchors)
    try:
        for f in v.get('key_sets', []):
            try: apply_key_set(trust, open(FIX + f, 'rb').read())
            except Refused as r: raise Refused(f'key set {f} refused: {r.code}')
        kind, key, p, h, pool = verify_chained(data, v['read_as'], trust)
        got = None
        if KINDS[kind][2] == 'device': assert key in (devpub, serverpub)
        owner = p['device_key'] if 'device_key' in p else key
        if 'fingerprint' in p and p['product'] == fp['product']:
            if dict(p['fingerprint']) != expected_fingerprint.get(owner): got = 'fingerprint differs'
        # The manifest's `pool`: the pool license (and refresh) it verifies through.
        named = v.get('pool')
        if (pool is None) != (named is None): got = 'verified through another pool (or none)'
        elif named is not None:
            chain = p['pool']
            if chain['license'] != binary(named['license']): got = 'another pool license'
            if chain.get('refresh') != (binary(named['refresh']) if 'refresh' in named else None):
                got = 'another pool refresh'
            if key != serverpub: got = 'not signed by the pool server key'
    except Refused as r:
        got = r.code
    want = v['error']['code'] if v['error'] else None
    ok = got == want
    failed += not ok
    passed += ok
    print('ok  ' if ok else 'FAIL', v['file'], 'want', want, 'got', got)
print(f'{passed} passed, {failed} failed')

# The trust files: the kids each holds, or None if it is refused.
trust_failed = trust_passed = 0
for t in man.get('trust_files', []):
    try: got = sorted(k.hex() for k in read_trust_file(open(FIX + t['file'], 'rb').read()))
    except ValueError: got = None
    ok = got == t['kids']
    trust_failed += not ok
    trust_passed += ok
    print('ok  ' if ok else 'FAIL', t['file'], 'want', t['kids'], 'got', got)
print(f'trust files: {trust_passed} passed, {trust_failed} failed')

# Why §3.4 makes a reader check the key itself: OpenSSL alone accepts the identity-key
# forgery (A = R = neutral element, S = 0) for any message.
try:
    Ed25519PublicKey.from_public_bytes(bytes([1] + [0] * 31)).verify(bytes([1] + [0] * 63), b'any message')
    print('note: OpenSSL verifies the identity-key forgery by itself (§3.4)')
except InvalidSignature:
    print('note: OpenSSL refuses the identity-key forgery by itself')
sys.exit(1 if failed or trust_failed else 0)
