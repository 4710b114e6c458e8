/* Network namespace helpers.
 *
 * TODO(cni): setns helpers for the endpoint code (enter a pod's netns on a
 * dedicated thread, run rtnetlink there, return to the original netns). The agent
 * creates the veth peer directly inside the pod's netns, so these belong with the
 * CNI issue that implements endpoint creation. Nothing is exported yet. */
#include "modules.h"

bool netns_register(napi_env env, napi_value exports)
{
	(void)env;
	(void)exports;
	return true;
}
