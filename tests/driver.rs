//! The suite runs twice, on io_uring and on epoll (`MONOIO_FORCE_LEGACY_DRIVER=1`). This
//! checks that each run really uses the driver it claims: if io_uring were silently missing,
//! both runs would test epoll.

mod common;

use ringsocket::Driver;

#[test]
fn workers_run_on_the_expected_driver() {
    let server = common::start(common::echo_app());
    let forced_legacy = std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some();
    let allowed_missing = std::env::var_os("RINGSOCKET_ALLOW_NO_URING").is_some();
    if forced_legacy {
        assert_eq!(server.driver(), Driver::Epoll);
    } else if !allowed_missing {
        // monoio probes io_uring once per process and silently falls back to epoll if the
        // probe fails; say why it failed.
        let probe = io_uring::IoUring::new(8).map(|_| ());
        assert_eq!(
            server.driver(),
            Driver::IoUring,
            "io_uring is not available here (a ring now: {probe:?}); set \
             RINGSOCKET_ALLOW_NO_URING=1 to test epoll only"
        );
    }
    server.shutdown();
    server.wait();
}
