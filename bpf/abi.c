/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Not a program. This object exists so the compiler emits BTF for every type
 * the TypeScript side reads or writes, including enums and the ring-buffer
 * event that no map names as its value type. scripts/gen-abi.ts turns its BTF
 * into src/abi/abi.gen.ts; a test checks the loaded objects agree. */
#include "hypha/maps.h"

struct hypha_abi {
	struct hypha_lb4_svc_key svc_key;
	struct hypha_lb4_svc_val svc_val;
	struct hypha_lb4_backend backend;
	struct hypha_lb4_svc_name svc_name;
	struct hypha_lb4_affinity_key affinity_key;
	struct hypha_lb4_affinity_val affinity_val;
	struct hypha_ct4_key ct_key;
	struct hypha_ct4_entry ct_entry;
	struct hypha_drop_counter drop_counter;
	struct hypha_drop_event drop_event;
	struct hypha_config config;
	struct hypha_endpoint endpoint;
	struct hypha_ipcache_key ipcache_key;
	struct hypha_ipcache_val ipcache_val;
	struct hypha_frag4_key frag_key;
	struct hypha_frag4_ports frag_ports;
	struct hypha_policy_key policy_key;
	struct hypha_policy_val policy_val;
	struct hypha_policy_ep policy_ep;
	struct hypha_policy_cidr_val policy_cidr_val;
	enum hypha_policy_dir policy_dir;
	enum hypha_policy_flags policy_flags;
	enum hypha_policy_ep_flags policy_ep_flags;
	enum hypha_ipcache_flags ipcache_flags;
	enum hypha_endpoint_flags endpoint_flags;
	enum hypha_lb_scope scope;
	enum hypha_svc_flags svc_flags;
	enum hypha_backend_flags backend_flags;
	enum hypha_ct_dir ct_dir;
	enum hypha_ct_flags ct_flags;
	enum hypha_drop_reason drop_reason;
	enum hypha_hook hook;
	enum hypha_config_flags config_flags;
};

struct hypha_abi hypha_abi_anchor;

char LICENSE[] SEC("license") = "Dual BSD/GPL";
