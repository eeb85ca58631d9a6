// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
//
// metalcast loss injector: a tc (clsact / tcx) classifier that drops,
// duplicates and corrupts packets on one interface and direction.
//
// Knobs live in the `LOSS_CONFIG` array map (one entry, rewritten at runtime by
// the Rust loader, `metalcast_ebpf::loss`); counters live in the per-CPU array
// `LOSS_STATS`. The struct layouts below are mirrored by `#[repr(C)]` structs in
// ebpf/src/loss.rs -- change both together.
//
// Rebuild with ebpf/build.sh (never by hand; the object is committed).
// Section "classifier" is what aya 0.14 recognises for tc programs.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define PPM 1000000u

// LossConfig.flags
#define LOSS_F_UDP_ONLY 0x1u // only UDP (v4/v6) packets are subject to loss
#define LOSS_F_GILBERT 0x2u  // Gilbert-Elliott bursty loss enabled

// skb->mark value put on our own duplicates so that the copy, which re-enters
// this very hook, is passed untouched instead of being duplicated again.
#define DUP_MARK 0x6d634450u // "mcDP"

struct loss_config {
	__u32 drop_ppm;     // independent random drop probability
	__u32 ge_p_good_bad; // Gilbert-Elliott P(good -> bad) per packet
	__u32 ge_p_bad_good; // Gilbert-Elliott P(bad -> good) per packet
	__u32 ge_loss_bad;   // loss probability while in the bad state
	__u32 ge_loss_good;  // loss probability while in the good state
	__u32 dup_ppm;       // duplicate probability
	__u32 corrupt_ppm;   // corrupt-one-UDP-payload-byte probability
	__u32 flags;         // LOSS_F_*
};

struct loss_stats {
	__u64 seen;       // packets subject to the loss model
	__u64 dropped;    // ... of which dropped (random or Gilbert-Elliott)
	__u64 duplicated; // ... of which duplicated (one extra copy each)
	__u64 corrupted;  // ... of which had one UDP payload byte flipped
	__u64 ignored;    // packets passed untouched (non-UDP with UDP_ONLY, our own duplicates)
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct loss_config);
} LOSS_CONFIG SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct loss_stats);
} LOSS_STATS SEC(".maps");

// Gilbert-Elliott state: 0 = good, 1 = bad. One global chain for the link;
// concurrent updates from two CPUs may race, which only perturbs the chain.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} LOSS_GE_STATE SEC(".maps");

static __always_inline int chance(__u32 ppm)
{
	if (ppm == 0)
		return 0;
	if (ppm >= PPM)
		return 1;
	return (bpf_get_prandom_u32() % PPM) < ppm;
}

// Finds the UDP header. Returns 1 for UDP (v4 or v6 without extension
// headers); *payload/*payload_len are set when the UDP header is present (not
// for non-first IPv4 fragments, which still count as UDP).
static __always_inline int find_udp(struct __sk_buff *skb, __u32 *payload, __u32 *payload_len)
{
	__u32 l4;
	*payload_len = 0;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
			return 0;
		if (ip.protocol != IPPROTO_UDP)
			return 0;
		if (ip.frag_off & bpf_htons(0x1fff)) // non-first fragment: no UDP header
			return 1;
		l4 = ETH_HLEN + (__u32)ip.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
			return 0;
		if (ip6.nexthdr != IPPROTO_UDP)
			return 0;
		l4 = ETH_HLEN + sizeof(ip6);
	} else {
		return 0;
	}

	struct udphdr udp;
	if (bpf_skb_load_bytes(skb, l4, &udp, sizeof(udp)) < 0)
		return 1;
	__u32 ulen = bpf_ntohs(udp.len);
	__u32 end = skb->len;
	*payload = l4 + sizeof(udp);
	if (ulen > sizeof(udp) && *payload < end) {
		__u32 len = ulen - sizeof(udp);
		if (len > end - *payload)
			len = end - *payload;
		*payload_len = len;
	}
	return 1;
}

static __always_inline int loss(struct __sk_buff *skb, __u64 redirect_flags)
{
	__u32 zero = 0;
	struct loss_config *cfg = bpf_map_lookup_elem(&LOSS_CONFIG, &zero);
	struct loss_stats *st = bpf_map_lookup_elem(&LOSS_STATS, &zero);
	if (!cfg || !st)
		return TC_ACT_OK;

	if (skb->mark == DUP_MARK) {
		// Our own duplicate coming back through the hook.
		skb->mark = 0;
		st->ignored++;
		return TC_ACT_OK;
	}

	__u32 payload = 0, payload_len = 0;
	int is_udp = find_udp(skb, &payload, &payload_len);
	if ((cfg->flags & LOSS_F_UDP_ONLY) && !is_udp) {
		st->ignored++;
		return TC_ACT_OK;
	}
	st->seen++;

	int drop = chance(cfg->drop_ppm);
	if (cfg->flags & LOSS_F_GILBERT) {
		__u32 *bad = bpf_map_lookup_elem(&LOSS_GE_STATE, &zero);
		if (bad) {
			// Loss is decided in the current state, then the chain moves on.
			if (chance(*bad ? cfg->ge_loss_bad : cfg->ge_loss_good))
				drop = 1;
			if (*bad) {
				if (chance(cfg->ge_p_bad_good))
					*bad = 0;
			} else if (chance(cfg->ge_p_good_bad)) {
				*bad = 1;
			}
		}
	}
	if (drop) {
		st->dropped++;
		return TC_ACT_SHOT;
	}

	if (chance(cfg->dup_ppm)) {
		__u32 mark = skb->mark;
		skb->mark = DUP_MARK;
		if (bpf_clone_redirect(skb, skb->ifindex, redirect_flags) == 0)
			st->duplicated++;
		skb->mark = mark;
	}

	if (payload_len > 0 && chance(cfg->corrupt_ppm)) {
		__u32 off = payload + bpf_get_prandom_u32() % payload_len;
		__u8 byte;
		if (bpf_skb_load_bytes(skb, off, &byte, 1) == 0) {
			byte ^= (__u8)(1 + bpf_get_prandom_u32() % 255); // never 0: always a change
			// Checksums are deliberately left stale.
			if (bpf_skb_store_bytes(skb, off, &byte, 1, 0) == 0)
				st->corrupted++;
		}
	}
	return TC_ACT_OK;
}

SEC("classifier")
int loss_egress(struct __sk_buff *skb)
{
	return loss(skb, 0);
}

SEC("classifier")
int loss_ingress(struct __sk_buff *skb)
{
	return loss(skb, BPF_F_INGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
