#include "streampulse_plugin.h"

/*
 * Every binary that links the SDK carries this marker in its own ELF section. The host reads it from
 * the file before dlopen, so a plugin built for another protocol version is refused without running
 * any of its code. `used` + `retain` keep it through the linker's garbage collection.
 */
__attribute__((section(SP_PLUGIN_ABI_SECTION), used, retain, visibility("default")))
const sp_abi_marker streampulse_abi_marker = {
    .magic = SP_PLUGIN_ABI_MAGIC,
    .abi_version = SP_PLUGIN_ABI_VERSION,
    .marker_size = sizeof(sp_abi_marker),
};
