/* placeholder, not committed */
