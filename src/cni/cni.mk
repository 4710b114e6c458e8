# The CNI plugin binary (src/cni/shim/hypha-cni.c): what a container runtime
# executes as /opt/cni/bin/hypha. C, so a runtime pays about a millisecond to
# start it rather than a Node process's tens; jansson is linked statically,
# so the binary needs nothing but libc. `hypha agent` installs it
# (src/cni/install.ts).
CNI_BUILD := src/cni/build
CNI_SHIM := $(CNI_BUILD)/hypha-cni
CNI_CFLAGS := -O2 -g -std=gnu11 -Wall -Wextra -Werror=implicit-function-declaration -Wformat=2 \
	-D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
CNI_LDFLAGS := -pie -Wl,-z,relro,-z,now
CNI_JANSSON_A = $(firstword $(wildcard /usr/lib/$(shell gcc -dumpmachine)/libjansson.a /usr/lib/libjansson.a /usr/local/lib/libjansson.a))

BUILD_TARGETS += $(CNI_SHIM)

$(CNI_SHIM): src/cni/shim/hypha-cni.c src/cni/cni.mk | $(APT_STAMP)
	@mkdir -p $(dir $@)
	@test -n "$(CNI_JANSSON_A)" || { echo "cni: libjansson.a not found (apt-get install libjansson-dev)" >&2; exit 1; }
	gcc $(CNI_CFLAGS) -o $@.tmp $< $(CNI_JANSSON_A) $(CNI_LDFLAGS)
	@mv $@.tmp $@

.PHONY: cni-shim clean-cni
cni-shim: $(CNI_SHIM)
clean: clean-cni
clean-cni:
	rm -rf $(CNI_BUILD)
