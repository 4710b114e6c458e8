/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Bounds-checked header parsing into a flat summary of the packet. Works on
 * any (data, data_end) pair, so XDP and TC share it. Every access is checked
 * before it is made; nothing past the L4 ports and flags is read. */
#ifndef HYPHA_LIB_PARSE_H
#define HYPHA_LIB_PARSE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "hypha/drop.h"

#define HYPHA_L3_OFF ETH_HLEN

enum {
	HYPHA_PARSE_OK = 0,
	HYPHA_PARSE_NOT_IPV4 = 1,	/* ARP, IPv6, VLAN-tagged...: not ours yet, passed */
};

enum {
	HYPHA_FRAG_NONE = 0,
	HYPHA_FRAG_FIRST = 1,		/* MF set, offset 0: has the L4 header */
	HYPHA_FRAG_LATER = 2,		/* offset > 0: no L4 header at all */
};

/* TCP flag bits as they sit in byte 13 of the TCP header. */
#define HYPHA_TCP_FIN 0x01
#define HYPHA_TCP_SYN 0x02
#define HYPHA_TCP_RST 0x04
#define HYPHA_TCP_ACK 0x10

struct hypha_pkt4 {
	hypha_ip4_t saddr;
	hypha_ip4_t daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
	__u8 frag;
	__u8 ihl_bytes;
	__u16 l4_off;
	__be16 ip_id;
	__u32 len;
	/* ICMP echo request or reply (not a fragment): its identifier, which
	 * masquerade maps as it maps ports. */
	__be16 icmp_id;
	__u8 icmp_echo;		/* HYPHA_ICMP_ECHO_REQUEST / _REPLY, 0 otherwise */
	__u8 icmp_err;		/* an ICMP error (unreachable, time exceeded, parameter problem) */
	__u8 frag_ports;	/* a later fragment whose ports came from its first (frag.h) */
	__u8 df;		/* don't fragment */
	__u16 pad;
};

#define HYPHA_ICMP_ECHO_REQUEST 8
#define HYPHA_ICMP_ECHO_REPLY 0
/* icmp_echo values: the type + 1, so 0 means "not an echo". */
#define HYPHA_ECHO_REQUEST (HYPHA_ICMP_ECHO_REQUEST + 1)
#define HYPHA_ECHO_REPLY (HYPHA_ICMP_ECHO_REPLY + 1)
#define HYPHA_ICMP_DEST_UNREACH 3
#define HYPHA_ICMP_TIME_EXCEEDED 11
#define HYPHA_ICMP_PARAMETERPROB 12

static __always_inline int hypha_parse4(void *data, void *data_end, struct hypha_pkt4 *p)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	void *l4;
	__u16 frag_off;

	if ((void *)(eth + 1) > data_end)
		return -HYPHA_DROP_INVALID_PACKET;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return HYPHA_PARSE_NOT_IPV4;

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -HYPHA_DROP_INVALID_PACKET;
	if (ip->version != 4 || ip->ihl < 5)
		return -HYPHA_DROP_INVALID_PACKET;

	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->ihl_bytes = ip->ihl * 4;
	p->l4_off = HYPHA_L3_OFF + p->ihl_bytes;
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->ip_id = ip->id;
	p->len = data_end - data;

	frag_off = bpf_ntohs(ip->frag_off);
	p->df = !!(frag_off & 0x4000);
	if (frag_off & 0x1fff)
		p->frag = HYPHA_FRAG_LATER;
	else if (frag_off & 0x2000)
		p->frag = HYPHA_FRAG_FIRST;
	else
		p->frag = HYPHA_FRAG_NONE;
	if (p->frag == HYPHA_FRAG_LATER)
		return HYPHA_PARSE_OK;

	/* IP options are skipped, not refused: only their length matters here. */
	l4 = (void *)ip + (ip->ihl * 4);
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -HYPHA_DROP_INVALID_PACKET;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
	} else if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -HYPHA_DROP_INVALID_PACKET;
		p->sport = uh->source;
		p->dport = uh->dest;
	} else if (p->proto == IPPROTO_SCTP) {
		/* The common header starts with the ports, as UDP's does: policy
		 * matches them (Services do not translate SCTP). */
		struct udphdr *sh = l4;

		if ((void *)(sh + 1) > data_end)
			return -HYPHA_DROP_INVALID_PACKET;
		p->sport = sh->source;
		p->dport = sh->dest;
	} else if (p->proto == IPPROTO_ICMP && p->frag == HYPHA_FRAG_NONE) {
		/* type, code, checksum, identifier, sequence */
		__u8 *ih = l4;

		if ((void *)(ih + 8) > data_end)
			return -HYPHA_DROP_INVALID_PACKET;
		if (ih[0] == HYPHA_ICMP_ECHO_REQUEST || ih[0] == HYPHA_ICMP_ECHO_REPLY) {
			p->icmp_echo = ih[0] + 1;
			p->icmp_id = *(__be16 *)(ih + 4);
		} else if (ih[0] == HYPHA_ICMP_DEST_UNREACH || ih[0] == HYPHA_ICMP_TIME_EXCEEDED ||
			   ih[0] == HYPHA_ICMP_PARAMETERPROB) {
			p->icmp_err = 1;
		}
	}
	return HYPHA_PARSE_OK;
}

/* TCP or UDP whose ports are known: not a later fragment, unless its first
 * fragment was seen and told us the ports (frag.h). */
static __always_inline int hypha_has_ports(const struct hypha_pkt4 *p)
{
	return (p->frag != HYPHA_FRAG_LATER || p->frag_ports) &&
	       (p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP);
}

#endif /* HYPHA_LIB_PARSE_H */
