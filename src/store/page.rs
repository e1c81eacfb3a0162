//! A page of contacts packed into two buffers, as the store hands a streamed answer's pages
//! to the TCP core (ListAll, AskForUpdate, a full push; docs/PROTOCOL.md §8.5, §8.11): the
//! text of every field back to back in one `String` and one 16-byte row per contact, so a
//! page of 2048 contacts is two allocations instead of three per contact, and the core
//! writes each record from borrowed text.

use super::Contact;

/// Where one contact's fields end in [`ContactPage::text`], and its clock: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Row {
    user_end: u32,
    contact_end: u32,
    phone_end: u32,
    clock: u32,
}

/// One contact of a [`ContactPage`], borrowed: the same fields as [`Contact`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactRef<'a> {
    /// The owner's name (at most 256 bytes).
    pub username: &'a str,
    /// The contact's name (at most 256 bytes).
    pub contact: &'a str,
    /// The phone number (at most 20 bytes).
    pub phone: &'a str,
    /// Lamport clock of the write that set it.
    pub clock: u32,
}

impl ContactRef<'_> {
    /// An owned copy.
    pub fn to_contact(&self) -> Contact {
        Contact {
            username: self.username.to_owned(),
            contact: self.contact.to_owned(),
            phone: self.phone.to_owned(),
            clock: self.clock,
        }
    }
}

/// Contacts in order, packed: 16 bytes per contact plus the bytes of its three fields. A
/// page holds at most 4 GiB of text (a page of the store's pages, at most a few thousand
/// contacts of at most 532 bytes, is far below).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactPage {
    /// The fields of every contact, back to back.
    text: String,
    rows: Vec<Row>,
}

impl ContactPage {
    /// An empty page with room for `contacts` contacts of about `bytes` bytes of text in
    /// all.
    pub fn with_capacity(contacts: usize, bytes: usize) -> Self {
        ContactPage {
            text: String::with_capacity(bytes),
            rows: Vec::with_capacity(contacts),
        }
    }

    /// Appends a contact.
    ///
    /// # Panics
    /// When the page's text would pass 4 GiB (never for a store page).
    pub fn push(&mut self, username: &str, contact: &str, phone: &str, clock: u32) {
        let mut end = |s: &str| {
            self.text.push_str(s);
            u32::try_from(self.text.len()).expect("a contact page holds under 4 GiB")
        };
        let user_end = end(username);
        let contact_end = end(contact);
        let phone_end = end(phone);
        self.rows.push(Row {
            user_end,
            contact_end,
            phone_end,
            clock,
        });
    }

    /// Appends a copy of `c`.
    pub fn push_contact(&mut self, c: &Contact) {
        self.push(&c.username, &c.contact, &c.phone, c.clock);
    }

    /// Contacts in the page.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the page holds no contact.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Contact `i` (0-based), if there is one.
    pub fn get(&self, i: usize) -> Option<ContactRef<'_>> {
        let r = self.rows.get(i)?;
        let start = match i {
            0 => 0,
            _ => self.rows[i - 1].phone_end as usize,
        };
        let (u, c, p) = (
            r.user_end as usize,
            r.contact_end as usize,
            r.phone_end as usize,
        );
        Some(ContactRef {
            username: &self.text[start..u],
            contact: &self.text[u..c],
            phone: &self.text[c..p],
            clock: r.clock,
        })
    }

    /// The last contact, if any.
    pub fn last(&self) -> Option<ContactRef<'_>> {
        self.get(self.len().checked_sub(1)?)
    }

    /// The contacts in order.
    pub fn iter(&self) -> impl Iterator<Item = ContactRef<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Empties the page, keeping its buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.rows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_contacts_come_back_in_order() {
        let mut p = ContactPage::default();
        assert!(p.is_empty() && p.last().is_none() && p.get(0).is_none());
        p.push("ann", "bob", "+1", 7);
        p.push("", "é", "", 0);
        let c = Contact {
            username: "u".repeat(256),
            contact: "c".into(),
            phone: "+44".into(),
            clock: u32::MAX,
        };
        p.push_contact(&c);
        assert_eq!(p.len(), 3);
        let all: Vec<Contact> = p.iter().map(|r| r.to_contact()).collect();
        assert_eq!(all[0].username, "ann");
        assert_eq!((all[0].contact.as_str(), all[0].clock), ("bob", 7));
        assert_eq!(
            (all[1].username.as_str(), all[1].contact.as_str()),
            ("", "é")
        );
        assert_eq!(all[2], c);
        assert_eq!(p.last().map(|r| r.phone), Some("+44"));
        p.clear();
        assert!(p.is_empty());
    }
}
