// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// metalcast XDP receive fast path: takes the imaging session's multicast
// packets off the normal network stack into an AF_XDP socket, and drops
// symbols of blocks this node has already decoded before they cost anything.
//
// For every frame:
//   1. parse Ethernet, up to two 802.1Q/802.1ad tags, IPv4 or IPv6, UDP, and
//      the metalcast header, every access through ptr_at() (one bounds check);
//   2. look up (destination address, destination port, session id) in
//      XDP_RX_SESSIONS; no match -> XDP_PASS (ARP, DHCP, SSH, the unicast
//      control channel, IP fragments, IPv6 extension headers, garbage);
//   3. a symbol (kind 1) of a block whose bit is set in XDP_RX_DONE -> XDP_DROP
//      (the receiver would discard it as redundant anyway);
//   4. else redirect to the AF_XDP socket in XDP_RX_XSKS at the frame's rx
//      queue; with no socket on that queue -> XDP_PASS (the receiver's UDP
//      socket still gets it).
// Counters per session slot per CPU in XDP_RX_STATS; slot MAX_SESSIONS counts
// the frames that matched no session. Nothing here changes a frame.
//
// The header is not authenticated here (the MAC is checked in user space), so
// a forged packet can at worst be dropped if it claims a finished block: the
// receiver had no use for such a symbol anyway.
//
// Struct layouts are mirrored by #[repr(C)] structs in ebpf/src/xdp_rx.rs --
// change both together. Rebuild with ebpf/build.sh (the object is committed).

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_SESSIONS 64
#define MAX_QUEUES 64
#define DONE_WORDS 65536 // 64-bit words of finished-block bits, shared by all sessions

// metalcast packet header (docs/wire-protocol.md), 16 bytes: version (5),
// kind, session id (u32 LE), sequence number (low 32 bits, LE), block (u24
// LE, symbols), ESI (u24 LE). Versions up to 4 began with the magic "MC":
// their first byte is no version, and they are passed as other traffic.
#define MC_HEADER_LEN 16
#define MC_VERSION 5
#define MC_KIND_SYMBOL 1

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8

struct session_key {
	__u8 addr[16]; // destination: IPv6, or IPv4-mapped ::ffff:a.b.c.d
	__u16 port;    // destination UDP port, host byte order
	__u16 pad0;
	__u32 session_id;
};

struct session_info {
	__u32 slot;      // index into XDP_RX_STATS, < MAX_SESSIONS
	__u32 nblocks;   // blocks in the image; symbols of other blocks are not dropped here
	__u32 done_base; // first word of this session's bits in XDP_RX_DONE
	__u32 pad;
};

struct rx_stats {
	__u64 seen;          // frames matching the session
	__u64 redirected;    // ... handed to the AF_XDP socket
	__u64 early_dropped; // ... symbols of finished blocks, dropped here
	__u64 passed;        // ... passed to the stack (no AF_XDP socket on that queue)
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SESSIONS);
	__type(key, struct session_key);
	__type(value, struct session_info);
} XDP_RX_SESSIONS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_SESSIONS + 1);
	__type(key, __u32);
	__type(value, struct rx_stats);
} XDP_RX_STATS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DONE_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} XDP_RX_DONE SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} XDP_RX_XSKS SEC(".maps");

// The one bounds check: a pointer to `len` bytes at `off` in the frame, or
// NULL if the frame is shorter. `off` is capped so the verifier can bound it.
static __always_inline void *ptr_at(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if (off > 256)
		return NULL;
	if (data + off + len > data_end)
		return NULL;
	return data + off;
}

// Fills `key` (address, port) and returns the offset of the UDP payload, or
// 0 when the frame is not an unfragmented UDP datagram we can parse.
static __always_inline __u32 parse_udp(struct xdp_md *ctx, struct session_key *key)
{
	__u32 off = ETH_HLEN;
	struct ethhdr *eth = ptr_at(ctx, 0, ETH_HLEN);
	if (!eth)
		return 0;
	__u16 proto = eth->h_proto;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q_) && proto != bpf_htons(ETH_P_8021AD_))
			break;
		__u16 *tag = ptr_at(ctx, off, 4); // TCI, then the encapsulated protocol
		if (!tag)
			return 0;
		proto = tag[1];
		off += 4;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = ptr_at(ctx, off, sizeof(*ip));
		if (!ip || ip->version != 4 || ip->ihl < 5)
			return 0;
		if (ip->protocol != IPPROTO_UDP)
			return 0;
		if (ip->frag_off & bpf_htons(0x3fff)) // MF set or a non-zero offset: leave to the stack
			return 0;
		key->addr[10] = 0xff;
		key->addr[11] = 0xff;
		__builtin_memcpy(&key->addr[12], &ip->daddr, 4);
		off += (__u32)ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = ptr_at(ctx, off, sizeof(*ip6));
		if (!ip6 || ip6->version != 6)
			return 0;
		if (ip6->nexthdr != IPPROTO_UDP) // extension headers (fragments...) go to the stack
			return 0;
		__builtin_memcpy(key->addr, &ip6->daddr, 16);
		off += sizeof(*ip6);
	} else {
		return 0;
	}

	struct udphdr *udp = ptr_at(ctx, off, sizeof(*udp));
	if (!udp)
		return 0;
	key->port = bpf_ntohs(udp->dest);
	return off + sizeof(*udp);
}

static __always_inline int xdp_rx(struct xdp_md *ctx)
{
	struct session_key key = {};
	__u32 other = MAX_SESSIONS;
	struct rx_stats *st;

	__u32 payload = parse_udp(ctx, &key);
	__u8 *mc = payload ? ptr_at(ctx, payload, MC_HEADER_LEN) : NULL;
	if (!mc || mc[0] != MC_VERSION)
		goto pass_other;
	__builtin_memcpy(&key.session_id, mc + 2, 4); // little endian, as BPF on x86/arm64

	struct session_info *s = bpf_map_lookup_elem(&XDP_RX_SESSIONS, &key);
	if (!s)
		goto pass_other;
	__u32 slot = s->slot;
	st = bpf_map_lookup_elem(&XDP_RX_STATS, &slot);
	if (!st)
		return XDP_PASS;
	st->seen++;

	if (mc[1] == MC_KIND_SYMBOL) {
		__u32 block = (__u32)mc[10] | (__u32)mc[11] << 8 | (__u32)mc[12] << 16;
		if (block < s->nblocks) {
			__u32 word = s->done_base + block / 64;
			__u64 *bits = bpf_map_lookup_elem(&XDP_RX_DONE, &word);
			if (bits && (*bits & (1ull << (block % 64)))) {
				st->early_dropped++;
				return XDP_DROP;
			}
		}
	}

	long action = bpf_redirect_map(&XDP_RX_XSKS, ctx->rx_queue_index, XDP_PASS);
	if (action == XDP_REDIRECT)
		st->redirected++;
	else
		st->passed++;
	return action;

pass_other:
	st = bpf_map_lookup_elem(&XDP_RX_STATS, &other);
	if (st) {
		st->seen++;
		st->passed++;
	}
	return XDP_PASS;
}

SEC("xdp")
int metalcast_xdp_rx(struct xdp_md *ctx)
{
	return xdp_rx(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
