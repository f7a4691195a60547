//! The devices in a sync right now. A device whose sync is in progress or
//! held open gets the event from that sync, so its pusher is not pushed
//! to as well (as Synapse does). Sync marks each request with an
//! `ActiveSync` guard for as long as it runs.

use std::{collections::HashMap, sync::Mutex};

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

/// The registry of devices syncing now.
#[derive(Debug, Default)]
pub struct ActiveSyncs {
    /// Per user, each syncing device with how many syncs it has running.
    devices: Mutex<HashMap<OwnedUserId, Vec<(OwnedDeviceId, usize)>>>,
}

/// A sync in progress; the device counts as syncing until it is dropped.
#[must_use = "the device counts as syncing only while the guard lives"]
pub struct ActiveSync<'a> {
    syncs: &'a ActiveSyncs,
    user: OwnedUserId,
    device: OwnedDeviceId,
}

impl ActiveSyncs {
    /// Marks a sync of `device` as running until the guard is dropped.
    pub fn enter(&self, user: &UserId, device: &DeviceId) -> ActiveSync<'_> {
        let mut all = self.devices.lock().expect("active syncs mutex");
        let devices = all.entry(user.to_owned()).or_default();
        match devices.iter_mut().find(|(d, _)| d == device) {
            Some((_, running)) => *running += 1,
            None => devices.push((device.to_owned(), 1)),
        }
        ActiveSync { syncs: self, user: user.to_owned(), device: device.to_owned() }
    }

    /// The user's devices with a sync running now.
    pub fn syncing_devices(&self, user: &UserId) -> Vec<OwnedDeviceId> {
        let all = self.devices.lock().expect("active syncs mutex");
        all.get(user).map(|devices| devices.iter().map(|(d, _)| d.clone()).collect()).unwrap_or_default()
    }

    /// Whether the device has a sync running now.
    pub fn is_syncing(&self, user: &UserId, device: &DeviceId) -> bool {
        let all = self.devices.lock().expect("active syncs mutex");
        all.get(user).is_some_and(|devices| devices.iter().any(|(d, _)| d == device))
    }

    fn leave(&self, user: &UserId, device: &DeviceId) {
        let mut all = self.devices.lock().expect("active syncs mutex");
        let Some(devices) = all.get_mut(user) else { return };
        if let Some(i) = devices.iter().position(|(d, _)| d == device) {
            devices[i].1 -= 1;
            if devices[i].1 == 0 {
                devices.swap_remove(i);
            }
        }
        if devices.is_empty() {
            all.remove(user);
        }
    }
}

impl Drop for ActiveSync<'_> {
    fn drop(&mut self) {
        self.syncs.leave(&self.user, &self.device);
    }
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, user_id};

    use super::*;

    #[test]
    fn a_device_syncs_until_its_last_sync_ends() {
        let syncs = ActiveSyncs::default();
        let (bob, phone, laptop) = (user_id!("@bob:x"), device_id!("PHONE"), device_id!("LAPTOP"));
        let first = syncs.enter(bob, phone);
        let second = syncs.enter(bob, phone);
        let other = syncs.enter(bob, laptop);
        assert!(syncs.is_syncing(bob, phone));
        drop(first);
        assert!(syncs.is_syncing(bob, phone), "one of its two syncs still runs");
        drop(second);
        assert!(!syncs.is_syncing(bob, phone));
        assert_eq!(syncs.syncing_devices(bob), vec![laptop.to_owned()]);
        drop(other);
        assert!(syncs.syncing_devices(bob).is_empty());
        assert!(syncs.devices.lock().unwrap().is_empty(), "nothing is kept for users not syncing");
    }
}
