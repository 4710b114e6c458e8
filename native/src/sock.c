/* Socket options Node's net module does not offer, for the L7 proxy
 * (src/l7/transparent.ts):
 *
 *  - sockSetOpts(fd, { transparent?, mark? }): IP_TRANSPARENT and SO_MARK on
 *    a socket Node already owns (the proxy's listener: the datapath assigns
 *    it connections to other addresses, and the SYN-ACK it sends from the
 *    original destination needs IP_TRANSPARENT);
 *  - tcpSocket4({ transparent?, mark?, bind? }): a new non-blocking IPv4
 *    TCP socket with those options set before it is bound to `bind`
 *    ({ address, port }), for Node to wrap (new net.Socket({ fd })) and
 *    connect: the proxy's upstream leaves with the client pod's address, so
 *    the policy of the destination judges the client, and with the mark that
 *    tells the datapath it has been through the proxy.
 *
 * Both need CAP_NET_ADMIN (IP_TRANSPARENT, SO_MARK). Failures throw the
 * errno with the option named. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "args.h"
#include "errors.h"
#include "modules.h"

struct sock_opts {
	bool transparent;
	bool has_mark;
	uint32_t mark;
};

static bool read_opts(napi_env env, napi_value opts, const char *fn, struct sock_opts *o)
{
	napi_value v;

	memset(o, 0, sizeof(*o));
	if (!hy_check_opts(env, opts, fn, "opts") || !hy_get_opt(env, opts, "transparent", &v))
		return false;
	if (v) {
		HY_NAPI_B(env, napi_get_value_bool(env, v, &o->transparent));
	}
	if (!hy_get_opt(env, opts, "mark", &v))
		return false;
	if (v) {
		if (!hy_get_u32(env, v, fn, "opts.mark", &o->mark))
			return false;
		o->has_mark = true;
	}
	return true;
}

static bool apply_opts(napi_env env, int fd, const struct sock_opts *o)
{
	int one = 1;

	if (o->transparent && setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one))) {
		hy_throw_errno(env, "setsockopt", errno, "IP_TRANSPARENT on fd %d", fd);
		return false;
	}
	if (o->has_mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &o->mark, sizeof(o->mark))) {
		hy_throw_errno(env, "setsockopt", errno, "SO_MARK 0x%x on fd %d", o->mark, fd);
		return false;
	}
	return true;
}

/* sockSetOpts(fd, opts): undefined */
static napi_value js_sock_set_opts(napi_env env, napi_callback_info info)
{
	napi_value argv[2];
	struct sock_opts o;
	int64_t fd;

	if (!hy_args(env, info, 2, argv) || !hy_get_int(env, argv[0], "sockSetOpts", "fd", 0, INT32_MAX, &fd) ||
	    !read_opts(env, argv[1], "sockSetOpts", &o) || !apply_opts(env, (int)fd, &o))
		return NULL;
	return hy_undefined(env);
}

/* tcpSocket4(opts): fd (the caller owns it) */
static napi_value js_tcp_socket4(napi_env env, napi_callback_info info)
{
	napi_value argv[1], bind_v, v, out;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sock_opts o;
	char *addr = NULL;
	uint32_t port = 0;
	int fd;

	if (!hy_args(env, info, 1, argv) || !read_opts(env, argv[0], "tcpSocket4", &o) ||
	    !hy_get_opt(env, argv[0], "bind", &bind_v))
		return NULL;
	if (bind_v) {
		if (!hy_check_opts(env, bind_v, "tcpSocket4", "opts.bind") || !hy_get_opt(env, bind_v, "address", &v))
			return NULL;
		if (!v) {
			hy_throw_code(env, "EINVALARG", "tcpSocket4", "opts.bind.address is required");
			return NULL;
		}
		if (!(addr = hy_get_string(env, v, "tcpSocket4", "opts.bind.address")))
			return NULL;
		if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1) {
			hy_throw_code(env, "EINVALARG", "tcpSocket4", "opts.bind.address \"%s\" is not an IPv4 address", addr);
			free(addr);
			return NULL;
		}
		free(addr);
		if (!hy_get_opt(env, bind_v, "port", &v))
			return NULL;
		if (v && !hy_get_u32(env, v, "tcpSocket4", "opts.bind.port", &port))
			return NULL;
		if (port > 65535) {
			hy_throw_code(env, "EINVALARG", "tcpSocket4", "opts.bind.port %u is above 65535", port);
			return NULL;
		}
		sin.sin_port = htons((uint16_t)port);
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		hy_throw_errno(env, "socket", errno, NULL);
		return NULL;
	}
	if (!apply_opts(env, fd, &o)) {
		close(fd);
		return NULL;
	}
	if (bind_v) {
		/* The kernel picks the port at bind (port 0) with IP_BIND_ADDRESS_NO_PORT
		 * off: a port clash shows here, not as a failed connect. */
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin))) {
			int err = errno;

			close(fd);
			hy_throw_errno(env, "bind", err, "%s:%u", inet_ntoa(sin.sin_addr), port);
			return NULL;
		}
	}
	HY_NAPI(env, napi_create_int32(env, fd, &out));
	return out;
}

bool sock_register(napi_env env, napi_value exports)
{
	return hy_export(env, exports, "sockSetOpts", js_sock_set_opts) &&
	       hy_export(env, exports, "tcpSocket4", js_tcp_socket4);
}
