//! Seeded random operations checked against a model of the namespace and file contents.

mod common;

use std::collections::BTreeMap;

use common::pattern;
use common::read_all;
use common::Image;
use common::MemDevice;
use starina_ext2::FileType;
use starina_ext2::Fs;
use starina_ext2::FsError;
use starina_ext2::Ino;
use starina_ext2::SetAttr;
use starina_ext2::ROOT_INO;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the file system should hold: names per directory, contents per inode.
#[derive(Default)]
struct Model {
    names: BTreeMap<(Ino, String), Ino>,
    contents: BTreeMap<Ino, Vec<u8>>,
}

impl Model {
    fn links(&self, ino: Ino) -> u32 {
        self.names.values().filter(|&&i| i == ino).count() as u32
    }
    fn forget_if_unlinked(&mut self, ino: Ino) {
        if self.links(ino) == 0 {
            self.contents.remove(&ino);
        }
    }
    fn random_file(&self, rng: &mut Rng) -> Option<Ino> {
        let n = self.contents.len() as u64;
        (n > 0).then(|| *self.contents.keys().nth(rng.below(n) as usize).unwrap())
    }
}

fn step(fs: &mut Fs<MemDevice>, model: &mut Model, dirs: &[Ino], rng: &mut Rng) {
    let dir = dirs[rng.below(dirs.len() as u64) as usize];
    let name = format!("n{}", rng.below(40));
    let existing = model.names.get(&(dir, name.clone())).copied();
    match rng.below(8) {
        0 | 1 => match fs.create(dir, name.as_bytes(), FileType::Regular, 0o644, 0, 0) {
            Ok(ino) => {
                assert!(existing.is_none());
                model.names.insert((dir, name), ino);
                model.contents.insert(ino, Vec::new());
            }
            Err(e) => assert_eq!((e, existing.is_some()), (FsError::Exists, true)),
        },
        2 | 3 => {
            let Some(ino) = model.random_file(rng) else {
                return;
            };
            let data = model.contents.get_mut(&ino).unwrap();
            let offset = rng.below(data.len() as u64 + 70_000) as usize;
            let bytes = pattern(rng.next(), rng.below(30_000) as usize + 1);
            assert_eq!(fs.write(ino, offset as u64, &bytes).unwrap(), bytes.len());
            if data.len() < offset + bytes.len() {
                data.resize(offset + bytes.len(), 0);
            }
            data[offset..offset + bytes.len()].copy_from_slice(&bytes);
        }
        4 => {
            let Some(ino) = model.random_file(rng) else {
                return;
            };
            let size = rng.below(400_000) as usize;
            let attr = SetAttr {
                size: Some(size as u64),
                ..SetAttr::default()
            };
            fs.set_attr(ino, &attr).unwrap();
            model.contents.get_mut(&ino).unwrap().resize(size, 0);
        }
        5 => match fs.unlink(dir, name.as_bytes()) {
            Ok(()) => {
                let ino = model.names.remove(&(dir, name)).unwrap();
                model.forget_if_unlinked(ino);
            }
            Err(e) => assert_eq!((e, existing), (FsError::NotFound, None)),
        },
        6 => {
            let Some(ino) = model.random_file(rng) else {
                return;
            };
            match fs.link(ino, dir, name.as_bytes()) {
                Ok(()) => assert!(model.names.insert((dir, name), ino).is_none()),
                Err(e) => assert_eq!((e, existing.is_some()), (FsError::Exists, true)),
            }
        }
        _ => {
            let to_dir = dirs[rng.below(dirs.len() as u64) as usize];
            let to = format!("n{}", rng.below(40));
            let result = fs.rename(dir, name.as_bytes(), to_dir, to.as_bytes());
            let Some(ino) = existing else {
                assert_eq!(result, Err(FsError::NotFound));
                return;
            };
            result.unwrap();
            let target = model.names.get(&(to_dir, to.clone())).copied();
            if target == Some(ino) {
                return; // both names are links to one file: nothing changes
            }
            model.names.remove(&(dir, name));
            model.names.insert((to_dir, to), ino);
            if let Some(old) = target {
                model.forget_if_unlinked(old);
            }
        }
    }
}

fn check(fs: &mut Fs<MemDevice>, model: &Model) {
    for ((dir, name), &ino) in &model.names {
        assert_eq!(fs.lookup(*dir, name.as_bytes()).unwrap(), ino, "{name}");
    }
    for (&ino, data) in &model.contents {
        assert_eq!(fs.stat(ino).unwrap().nlink, model.links(ino));
        assert!(read_all(fs, ino) == *data, "inode {ino} differs");
    }
}

#[test]
fn random_operations_match_the_model() {
    let image = Image::new(16 * 1024, &["-b", "1024"]);
    let mut fs = image.mount();
    let mut dirs = vec![ROOT_INO];
    for i in 0..3 {
        let parent = dirs[i % dirs.len()];
        dirs.push(
            fs.mkdir(parent, format!("d{i}").as_bytes(), 0o755, 0, 0)
                .unwrap(),
        );
    }
    let mut model = Model::default();
    let mut rng = Rng(0x0dd_ba11);
    for round in 0..6 {
        for _ in 0..400 {
            step(&mut fs, &mut model, &dirs, &mut rng);
        }
        check(&mut fs, &model);
        if round % 2 == 1 {
            image.unmount(fs);
            image.assert_clean();
            fs = image.mount();
            check(&mut fs, &model);
        } else {
            fs.sync().unwrap();
        }
    }
    image.unmount(fs);
    image.assert_clean();
    for ((dir, name), &ino) in model
        .names
        .iter()
        .filter(|((d, _), _)| *d == ROOT_INO)
        .take(5)
    {
        assert_eq!(*dir, ROOT_INO);
        assert!(
            image.debugfs(&format!("cat /{name}")) == model.contents[&ino],
            "/{name}"
        );
    }
}
