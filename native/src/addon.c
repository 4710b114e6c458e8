/* Module init: every file registers its own functions on the exports object. */
#include <node_api.h>

#include "args.h"
#include "handles.h"
#include "logcap.h"
#include "modules.h"

static napi_value init(napi_env env, napi_value exports)
{
	logcap_install();
	if (!hy_export(env, exports, "close", js_close) || !obj_register(env, exports) ||
	    !map_register(env, exports) || !prog_register(env, exports) ||
	    !link_register(env, exports) || !ringbuf_register(env, exports) ||
	    !netlink_register(env, exports) || !constants_register(env, exports) ||
	    !sweep_register(env, exports) || !sock_register(env, exports))
		return NULL;
	return exports;
}

NAPI_MODULE_INIT()
{
	return init(env, exports);
}
