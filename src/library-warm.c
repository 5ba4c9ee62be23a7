/* Checking a library's disks in the background: see library-warm.h. */
#include "config.h"
#include "library-warm.h"
#include "parent.h"

guint vcf_library_warm(VcfLibrary *lib, const gint *stop)
{
    g_autoptr(GPtrArray) names = vcf_library_list_vms(lib);
    guint n = 0;
    for (guint i = 0; i < names->len && !g_atomic_int_get(stop); i++) {
        g_autoptr(VcfVm) vm = vcf_library_load_vm(lib, names->pdata[i], NULL);
        /* A running VM's disks change: what is found in them is not kept. */
        if (vm != NULL && vm->power == VCF_POWER_ON)
            continue;
        for (guint j = 0; vm != NULL && j < vm->disks->len && !g_atomic_int_get(stop); j++) {
            const VcfVmDisk *d = g_ptr_array_index(vm->disks, j);
            /* A disk libvmdk refuses is refused again when a clone asks
             * for it, with its reason: nothing to say here. */
            VcfParent *p = vcf_parent_open(d->path, vcf_library_root(lib),
                                           vcf_library_link_cache(lib), 1, NULL);
            n += p != NULL;
            vcf_parent_free(p);
        }
    }
    return n;
}
