# A stand-in for the Mastodon models create_admin.rb uses (Account, User, UserRole, ActiveRecord), for
# running the real script with plain `ruby` in tests: `ruby -r fake_mastodon.rb -e "$(cat create_admin.rb)"`.
# Accounts persist in the JSON file $FAKE_MASTODON_DB between runs; passwords are stored as SHA-256
# digests only, so the file is no sink for the password.
require 'json'
require 'digest'

DB_PATH = ENV.fetch('FAKE_MASTODON_DB')
$db = File.exist?(DB_PATH) ? JSON.parse(File.read(DB_PATH)) : { 'accounts' => {} }

def fake_save_db
  File.write(DB_PATH, JSON.generate($db))
end

module ActiveRecord
  class RecordInvalid < StandardError
    attr_reader :record

    def initialize(record)
      @record = record
      super("Validation failed: #{record.errors.full_messages.join(', ')}")
    end
  end

  class Base
    def self.transaction
      yield
    end
  end
end

class FakeErrors
  def initialize(list)
    @list = list
  end

  def full_messages
    @list
  end
end

class UserRole
  attr_reader :name

  def initialize(name)
    @name = name
  end

  def self.find_by(name:)
    %w[Owner Admin Moderator].include?(name) ? new(name) : nil
  end
end

class Account
  attr_accessor :username, :user

  def initialize(username:)
    @username = username
  end

  def save(validate: true)
    true
  end

  def self.find_local(username)
    rec = $db['accounts'][username.downcase]
    return nil if rec.nil?

    account = new(username: rec['username'])
    account.user = User.from_record(account, rec) unless rec['no_user']
    account
  end
end

class User
  attr_accessor :email, :password, :password_confirmation, :account, :role, :agreement, :approved,
                :confirmed_at, :bypass_invite_request_check, :password_digest

  def initialize(**attributes)
    attributes.each { |key, value| public_send("#{key}=", value) }
  end

  def self.from_record(account, rec)
    user = new(email: rec['email'], account: account, approved: rec['approved'], role: UserRole.new(rec['role']))
    user.confirmed_at = rec['confirmed_at'] unless rec['confirmed_at'].to_s.empty?
    user.password_digest = rec['password_digest']
    user
  end

  def errors
    @errors ||= FakeErrors.new([])
  end

  def save!
    # FAKE_MASTODON_FAIL: raise an error whose message quotes the password (%PASSWORD%), as a careless
    # library might; the script must not print it.
    raise ENV['FAKE_MASTODON_FAIL'].gsub('%PASSWORD%', password.to_s) if ENV['FAKE_MASTODON_FAIL']

    key = account.username.downcase
    if $db['accounts'].any? { |k, r| k != key && r['email'] == email }
      @errors = FakeErrors.new(['Email has already been taken'])
      raise ActiveRecord::RecordInvalid, self
    end
    digest = password ? Digest::SHA256.hexdigest(password) : password_digest
    $db['accounts'][key] = { 'username' => account.username, 'email' => email, 'role' => role.name,
                             'approved' => approved, 'confirmed_at' => confirmed_at.to_s,
                             'password_digest' => digest }
    fake_save_db
    true
  end
end
