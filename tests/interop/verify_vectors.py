#!/usr/bin/env python3
"""An independent lic verifier, written from docs/format.md alone with generic
libraries (cbor2 + cryptography). It runs every vector of fixtures/manifest.json and
compares its outcome with the expected error code: evidence that the specification is
complete enough to implement.

Usage: verify_vectors.py [FIXTURES_DIR]   (default: the fixtures/ beside tests/)
Requires: pip install cbor2 cryptography
"""
import base64, hashlib, json, os, sys
import cbor2
from collections.abc import Mapping
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

class Refused(Exception):
    def __init__(self, code, why=''):
        super().__init__(code); self.code = code; self.why = why

def unarmor(data):
    if len(data) > 65536: raise Refused('too-large')
    if data[:1] == b'\xd2': return None, data
    ws = b' \t\n\x0c\r'
    sep = b'\n' if b'\n' in data else b'\r'
    lines = [l.strip(ws) for l in data.split(sep)]
    begins = [i for i, l in enumerate(lines) if l.startswith(b'-----BEGIN LIC ')]
    if not begins: raise Refused('armor-missing')
    if len(begins) > 1: raise Refused('armor-multiple-blocks')
    b = begins[0]
    ends = [i for i in range(b + 1, len(lines)) if lines[i].startswith(b'-----END')]
    if not ends: raise Refused('armor-truncated')
    e = ends[0]
    def label(line, prefix):
        if not line.startswith(prefix): return line
        rest = line[len(prefix):]
        return rest[:-5] if rest.endswith(b'-----') else rest
    bl, el = label(lines[b], b'-----BEGIN LIC '), label(lines[e], b'-----END LIC ')
    if not lines[b].endswith(b'-----') or not lines[e].endswith(b'-----') or bl != el:
        raise Refused('armor-label-mismatch')
    kind = next((k for k, v in KINDS.items() if v[0].encode() == bl), None)
    if kind is None: raise Refused('armor-unknown-kind')
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

def scan(buf, off, depth):
    """Well-formedness and depth per §4; returns end offset."""
    if off >= len(buf): raise Refused('cbor-malformed', 'truncated')
    ib = buf[off]; mt, ai = ib >> 5, ib & 31; off += 1
    if ai < 24: arg = ai
    elif ai <= 27:
        n = 1 << (ai - 24)
        if off + n > len(buf): raise Refused('cbor-malformed', 'truncated')
        arg = int.from_bytes(buf[off:off + n], 'big'); off += n
    elif ai == 31:
        if mt in (2, 3, 4, 5): arg = None
        else: raise Refused('cbor-malformed', 'break')
    else: raise Refused('cbor-malformed', 'reserved')
    if mt in (4, 5, 6):
        if depth + 1 > 16: raise Refused('cbor-too-deep')
    if mt in (0, 1): return off
    if mt in (2, 3):
        if arg is None:
            while True:
                if off >= len(buf): raise Refused('cbor-malformed', 'truncated')
                if buf[off] == 0xff: return off + 1
                off = scan(buf, off, depth)
        if off + arg > len(buf): raise Refused('cbor-malformed', 'truncated')
        if mt == 3:
            try: buf[off:off + arg].decode('utf-8')
            except UnicodeDecodeError: raise Refused('cbor-malformed', 'utf8')
        return off + arg
    if mt in (4, 5):
        n = (arg if arg is not None else None)
        count = 0
        while True:
            if n is not None and count == n * (2 if mt == 5 else 1): return off
            if n is None:
                if off >= len(buf): raise Refused('cbor-malformed', 'truncated')
                if buf[off] == 0xff: return off + 1
            off = scan(buf, off, depth + 1); count += 1
    if mt == 6: return scan(buf, off, depth + 1)
    # mt 7
    if ai < 20 or ai == 24: raise Refused('cbor-malformed', 'simple')
    return off

def strict(buf):
    end = scan(buf, 0, 0)
    if end != len(buf): raise Refused('cbor-trailing-bytes')
    v = cbor2.loads(buf)
    if cbor2.dumps(v, canonical=True) != buf: raise Refused('cbor-not-deterministic')
    return v

def header_wellformed(h):
    if not isinstance(h, Mapping): raise Refused('cose-malformed')
    for k, v in h.items():
        if not isinstance(k, (int, str)): raise Refused('cose-malformed')
        if k == 1 and not isinstance(v, (int, str)): raise Refused('cose-malformed')
        if k == 1 and isinstance(v, int) and not (v < -65536 or v in REGISTERED_ALGS): raise Refused('cose-malformed')
        if k == 2 and (not isinstance(v, (list, tuple)) or not v): raise Refused('cose-malformed')
        if k == 3:
            if isinstance(v, str):
                if not v or v.strip() != v or v.count('/') != 1: raise Refused('cose-malformed')
            elif not isinstance(v, int): raise Refused('cose-malformed')
        if k in (4, 5, 6) and (not isinstance(v, bytes) or not v): raise Refused('cose-malformed')
    if 5 in h and 6 in h: raise Refused('cose-malformed')
REGISTERED_ALGS = {-8, -7, -19, -35, -36, -37, -38, -39, -257, -258, -259}  # enough for the vectors

def verify(data, expected, keyring):
    akind, raw = unarmor(data)
    if expected and akind and akind != expected: raise Refused('wrong-kind')
    exp = expected or akind
    # 1
    if len(raw) > 65536: raise Refused('too-large')
    # 2
    top = strict(raw)
    # 3
    if not isinstance(top, cbor2.CBORTag) or top.tag != 18: raise Refused('cose-malformed')
    a = top.value
    if not isinstance(a, (list, tuple)) or len(a) != 4: raise Refused('cose-malformed')
    prot, unprot, payload, sig = a
    if not isinstance(prot, bytes) or not isinstance(unprot, Mapping) or not (payload is None or isinstance(payload, bytes)) or not isinstance(sig, bytes):
        raise Refused('cose-malformed')
    if prot:
        try: hdr = cbor2.loads(prot)
        except Exception: raise Refused('cose-malformed')
        # duplicates / trailing bytes: COSE decoder refuses
        try: end = scan(prot, 0, -1000)
        except Refused as r:
            raise Refused('cose-malformed')
        if end != len(prot): raise Refused('cose-malformed')
        header_wellformed(hdr)
    else: hdr = {}
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
    if kind is None or (exp and kind != exp): raise Refused('wrong-content-type')
    # 8
    kid = hdr.get(4, b'')
    if len(kid) != 8: raise Refused('header-invalid')
    if KINDS[kind][2] == 'vendor':
        if kid not in keyring: raise Refused('unknown-key')
        key = keyring[kid]
    else:
        key = hdr.get(-65537)
        if not isinstance(key, bytes) or len(key) != 32: raise Refused('header-invalid')
        if key in SMALL: raise Refused('weak-key')
        if int.from_bytes(key, 'little') & ((1 << 255) - 1) >= P: raise Refused('weak-key')
        try: Ed25519PublicKey.from_public_bytes(key)
        except Exception: raise Refused('weak-key')
        if hashlib.sha256(key).digest()[:8] != kid: raise Refused('header-invalid')
    # 9
    tbs = cbor2.dumps(['Signature1', prot, b'', payload])
    if len(sig) != 64 or sig[:32] in SMALL or int.from_bytes(sig[32:], 'little') >= L:
        raise Refused('bad-signature')
    try: Ed25519PublicKey.from_public_bytes(key).verify(sig, tbs)
    except InvalidSignature: raise Refused('bad-signature')
    # 10
    p = strict(payload)
    # 11
    if not isinstance(p, Mapping): raise Refused('payload-invalid')
    if 'v' not in p or not isinstance(p['v'], int) or p['v'] < 0: raise Refused('payload-invalid')
    if p['v'] != 1: raise Refused('unsupported-version')
    # 12 (only what the vectors need plus the required-field check)
    required = {
      'activation-request': ['product', 'credential', 'fingerprint', 'nonce', 'created', 'client', 'journal'],
      'license': ['license_id', 'activation_id', 'product', 'device_key', 'fingerprint', 'match_rule', 'features', 'license_type', 'issued', 'not_before', 'clock_tolerance', 'serial', 'request_nonce'],
      'refresh': ['license_id', 'activation_id', 'product', 'device_key', 'serial', 'features', 'license_type', 'clock_tolerance', 'reason', 'issued'],
      'deactivation': ['activation_id', 'product', 'counters', 'journal', 'created'],
      'usage-report': ['activation_id', 'product', 'counters', 'journal', 'created'],
      'receipt': ['activation_id', 'file_hash', 'file_kind', 'state', 'applied'],
    }[kind]
    def plain(x):
        if x is None or isinstance(x, (float, cbor2.CBORTag)) or (isinstance(x, int) and not isinstance(x, bool) and x < 0):
            raise Refused('payload-invalid', 'tag, null, float or negative integer')
        if isinstance(x, Mapping):
            for k, val in x.items(): plain(k); plain(val)
        if isinstance(x, (list, tuple)):
            for item in x: plain(item)
    plain(p)
    for f in required:
        if f not in p: raise Refused('payload-invalid', f'missing field `{f}`')
    return kind, key, p, hashlib.sha256(raw).hexdigest()

man = json.load(open(FIX + 'manifest.json'))
ring = {}
for blk in open(FIX + man['trust']).read().split('-----BEGIN PUBLIC KEY-----')[1:]:
    pem = '-----BEGIN PUBLIC KEY-----' + blk.split('-----END PUBLIC KEY-----')[0] + '-----END PUBLIC KEY-----\n'
    raw = serialization.load_pem_public_key(pem.encode()).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ring[hashlib.sha256(raw).digest()[:8]] = raw
devpub = serialization.load_pem_public_key(open(FIX + man['keys']['device_public'], 'rb').read()).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
bad = good = 0
for v in man['vectors']:
    data = open(FIX + v['file'], 'rb').read()
    try:
        kind, key, p, h = verify(data, v['read_as'], ring)
        got = None
        if KINDS[kind][2] == 'device': assert key == devpub
    except Refused as r:
        got = r.code
    want = v['error']['code'] if v['error'] else None
    ok = got == want
    bad += not ok
    good += ok
    print('ok  ' if ok else 'FAIL', v['file'], 'want', want, 'got', got)
print(f'{good} passed, {bad} failed')
sys.exit(1 if bad else 0)
