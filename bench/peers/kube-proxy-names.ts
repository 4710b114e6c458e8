// kube-proxy's chain names and number formatting, reproduced bit for bit
// (k8s.io/kubernetes v1.36.3, pkg/proxy/iptables and pkg/proxy/nftables).
import { createHash } from 'node:crypto';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * RFC 4648 base32 with padding (Go's base32.StdEncoding). Hand-written: Node has no
 * base32 codec and nothing in the tree provides one; it is ten lines.
 */
export function base32Std(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      out += B32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  while (out.length % 8 !== 0) out += '=';
  return out;
}

function sha256Base32(s: string): string {
  return base32Std(createHash('sha256').update(s, 'utf8').digest());
}

/** iptables portProtoHash: base32(sha256(servicePortName + protocol))[:16]. */
export function portProtoHash(servicePortName: string, protocol: string): string {
  return sha256Base32(servicePortName + protocol).slice(0, 16);
}

/** KUBE-SVC-…: the service's Cluster-policy chain. */
export function iptSvcChain(servicePortName: string, protocol: string): string {
  return 'KUBE-SVC-' + portProtoHash(servicePortName, protocol);
}

/** KUBE-EXT-…: the service's external-destinations (NodePort) chain. */
export function iptExtChain(servicePortName: string, protocol: string): string {
  return 'KUBE-EXT-' + portProtoHash(servicePortName, protocol);
}

/** KUBE-SEP-…: servicePortEndpointChainName, hash of name + protocol + "ip:port". */
export function iptSepChain(servicePortName: string, protocol: string, endpoint: string): string {
  return 'KUBE-SEP-' + sha256Base32(servicePortName + protocol + endpoint).slice(0, 16);
}

// knftables.NameLengthMax (256) - chainNamePrefixLengthMax (16)
const NFT_CHAIN_BASE_MAX = 240;

/** nftables hashAndTruncate: "HASH8-name", cut to 240 characters. */
export function nftHashAndTruncate(name: string): string {
  const out = sha256Base32(name).slice(0, 8) + '-' + name;
  return out.length > NFT_CHAIN_BASE_MAX ? out.slice(0, NFT_CHAIN_BASE_MAX - 3) + '...' : out;
}

/** servicePortChainNameBase: "HASH-ns/name/proto/portName". */
export function nftServiceBase(namespace: string, name: string, protocol: string, portName: string): string {
  return nftHashAndTruncate(`${namespace}/${name}/${protocol}/${portName}`);
}

/** servicePortEndpointChainNameBase: "HASH-ns/name/proto/portName__ip/port". */
export function nftEndpointBase(namespace: string, name: string, protocol: string, portName: string, ip: string, port: number): string {
  return nftHashAndTruncate(`${namespace}/${name}/${protocol}/${portName}__${ip.replaceAll(':', '.')}/${port}`);
}

/**
 * Go's fmt "%0.{digits}f" for a non-negative float64: the exact binary value rounded
 * half to even. Number.prototype.toFixed rounds exact ties up instead, which differs
 * from Go for 1/2048 and other exact ties, so this works on the bits.
 */
export function goFixed(x: number, digits: number): string {
  if (!Number.isFinite(x) || x < 0) throw new RangeError(`goFixed: ${x} is not a finite non-negative number`);
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const biasedExp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let exp: number;
  if (biasedExp === 0) {
    exp = -1074;
  } else {
    mant |= 1n << 52n;
    exp = biasedExp - 1075;
  }
  // x = mant * 2^exp; scaled = x * 10^digits, rounded half-even to an integer.
  let scaled: bigint;
  const mul = mant * 10n ** BigInt(digits);
  if (exp >= 0) {
    scaled = mul << BigInt(exp);
  } else {
    const shift = BigInt(-exp);
    scaled = mul >> shift;
    const rem = mul - (scaled << shift);
    const half = 1n << (shift - 1n);
    if (rem > half || (rem === half && (scaled & 1n) === 1n)) scaled += 1n;
  }
  const s = scaled.toString().padStart(digits + 1, '0');
  return digits === 0 ? s : `${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

/** computeProbability: fmt.Sprintf("%0.10f", 1.0/float64(n)). */
export function probability(n: number): string {
  return goFixed(1 / n, 10);
}
