//! Built without `--features libvirt`: this crate's libvirt tests are not compiled, and this test
//! says so (a failure with FLOTILLA_LABS=1, where every lab test must run).
#![cfg(not(feature = "libvirt"))]

#[test]
fn libvirt_tests_need_the_libvirt_feature() {
    flotilla_testkit::lab::not_built("provider-libvirt's libvirt tests", "libvirt");
}
