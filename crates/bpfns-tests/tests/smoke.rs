use bpfns_model::{NsId, ObjectKind};
use bpfns_tests::{require_kernel, Helper, TestKernel};

#[test]
fn smoke() {
    require_kernel!();
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, |_, m| eprint!("{m}"))));
    let tk = TestKernel::load("smoke");
    tk.kernel.set_namespace(NsId(5), NsId::ROOT, 1).unwrap();
    let mut h = Helper::spawn(&["create", "map"]);
    tk.kernel.tag_process(h.pid, NsId(5)).unwrap();
    h.go();
    let id: u32 = h.expect("id").parse().unwrap();
    assert_eq!(tk.kernel.owner(ObjectKind::Map, id).unwrap(), NsId(5));
    let maps = tk.kernel.list(ObjectKind::Map).unwrap();
    let m = maps.iter().find(|m| m.id == id).unwrap();
    eprintln!("{m:?}");
    assert_eq!(m.owner, NsId(5));
    h.finish();
}
