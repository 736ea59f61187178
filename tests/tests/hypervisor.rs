//! The hypervisor without hardware virtualization: the linux server's VM
//! creation fails with a message that says what is missing and how to get
//! it, and the rest of the system keeps running.

use starina_tests::boot;

#[test]
#[ignore = "boots the kernel under QEMU: run by make test"]
fn without_svm_or_vmx_the_error_says_how_to_get_it() {
    // A later -cpu wins: the same CPU model with SVM masked off (QEMU's
    // TCG has no VMX either).
    let run = boot(
        "linux_test",
        "q35",
        120,
        &["--until", "cannot create a VM", "--", "-cpu", "max,-svm"],
    );
    run.assert_code(0);
    run.assert_console("hypervisor: cannot create a VM: this CPU has neither AMD SVM nor Intel VMX");
    run.assert_console("-cpu max");
    run.assert_console("nested virtualization");
}
